//! The per-edge inverse geodesic that polygon and line sums need: distance `s12` and the
//! area term `S12` (Karney 2013, "Algorithms for geodesics"), nothing else.
//!
//! `geographiclib-rs` solves the general problem for every edge: it normalises angles with
//! `remquo`/`fmod`, normalises vectors with the overflow-safe `hypot`, and on every Newton
//! step evaluates the reduced length's series (two coefficient sets, four Clenshaw sums) for
//! the derivative. Polygon edges are short, finite, in range, and never need the reduced
//! length or the geodesic scale, so this kernel:
//!
//! - takes the ellipsoid's constants and series coefficients (`A3`, `C3`, `C4`) once, from
//!   the library's WGS84 [`Geodesic`];
//! - reduces angles with plain arithmetic (inputs are checked to be within ±90°/±180°) and
//!   normalises with `sqrt` (every vector here has components ≤ 1, so there is nothing for
//!   `hypot` to guard against);
//! - in Newton's iteration on the azimuth, uses the reduced length without its `J12` term
//!   as the derivative. For the short lines this kernel accepts (σ12 ≲ 0.5, Karney's
//!   "shortline"), that derivative is within a relative O(e'² σ12²) ≤ 0.2% of the exact
//!   one, so convergence stays fast; and the iteration stops on the same test as Karney's,
//!   |λ12(α1) − λ12| below machine epsilon with the exact λ12, so the solution is the same
//!   to rounding whatever derivative led there;
//! - takes sine, cosine and arctangent of small angles (below 1e-3 rad: on short edges the
//!   longitude difference, the Newton corrections, σ12, η and α12) from their Taylor series,
//!   cut where the first omitted term is below 2e-19 relative, i.e. far below half an ulp
//!   (see [`SMALL`]), so they are as exact as the library functions at a fraction of the cost;
//! - does not allocate (fixed-size arrays on the stack).
//!
//! Every other edge (meridional, equatorial, long or nearly antipodal, or crossing the
//! antimeridian) goes to the library's full algorithm. Tests compare both paths on random
//! and adversarial edges.

use std::f64::consts::FRAC_1_SQRT_2;

use geographiclib_rs::Geodesic;
use geographiclib_rs::capability::{AREA, DISTANCE};

/// Karney's series order in `geographiclib-rs` (the `C3`/`C4` arrays have this many terms).
const ORDER: usize = 6;
/// Newton steps before falling back to bisection, and the total cap, as in Karney.
const MAX_NEWTON: usize = 20;
const MAX_STEPS: usize = MAX_NEWTON + 53 + 10;
const TOL0: f64 = f64::EPSILON;

/// The figures of one edge.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct EdgeTerms {
    /// Geodesic distance, m.
    pub(crate) distance: f64,
    /// Area between the geodesic and the equator, m², signed as in `geographiclib`.
    pub(crate) area: f64,
}

/// WGS84 constants and series coefficients, computed once per process.
pub(crate) struct Kernel {
    geodesic: Geodesic,
    a: f64,
    f: f64,
    f1: f64,
    e2: f64,
    ep2: f64,
    b: f64,
    c2: f64,
    etol2: f64,
    tiny: f64,
    tolb: f64,
}

impl Kernel {
    pub(crate) fn new(geodesic: Geodesic) -> Self {
        let f = geodesic.f;
        let tol2 = TOL0.sqrt();
        Kernel {
            a: geodesic.a,
            f,
            f1: geodesic._f1,
            e2: geodesic._e2,
            ep2: geodesic._ep2,
            b: geodesic._b,
            c2: geodesic._c2,
            etol2: 0.1 * tol2 / (f.abs().max(0.001) * (1.0 - f / 2.0).min(1.0) / 2.0).sqrt(),
            tiny: geodesic.tiny_,
            tolb: TOL0 * tol2,
            geodesic,
        }
    }

    /// The planet's area, m².
    pub(crate) fn planet_area(&self) -> f64 {
        self.geodesic.area()
    }

    /// One end of edges, with what depends on it alone: a ring's vertex ends one edge and
    /// starts the next, so its trigonometry is computed once for both.
    pub(crate) fn vertex(&self, lat: f64, lon: f64) -> Vertex {
        let alat = ang_round(lat.abs());
        let (sbet, cbet) = if alat <= 90.0 {
            self.reduced(alat)
        } else {
            (f64::NAN, f64::NAN)
        };
        Vertex {
            lat,
            lon,
            alat,
            sbet,
            cbet,
            dn: (1.0 + self.ep2 * sbet * sbet).sqrt(),
        }
    }

    /// Distance and area term of the geodesic from `(lat1, lon1)` to `(lat2, lon2)`, degrees.
    #[cfg(test)]
    pub(crate) fn edge(&self, lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> EdgeTerms {
        self.edge_between(&self.vertex(lat1, lon1), &self.vertex(lat2, lon2))
    }

    /// Distance and area term of the geodesic from `v1` to `v2`.
    pub(crate) fn edge_between(&self, v1: &Vertex, v2: &Vertex) -> EdgeTerms {
        self.complete(self.start(v1, v2), v1, v2)
    }

    /// The terms of two edges, `a` and `b`, computed side by side: the Newton iteration is a
    /// long chain of dependent divisions and square roots, so interleaving two independent
    /// chains lets the processor run one while the other waits. Each edge's figures are
    /// exactly those [`Kernel::edge_between`] gives it (the same operations in the same order).
    pub(crate) fn edge_pair(&self, a: [&Vertex; 2], b: [&Vertex; 2]) -> [EdgeTerms; 2] {
        match (self.start(a[0], a[1]), self.start(b[0], b[1])) {
            (Some(Start::Iterate(sa)), Some(Start::Iterate(sb))) => {
                let (ra, rb) = self.solve_pair(&sa, &sb);
                let finish = |setup: &Setup, solved: Option<Solved>, [v1, v2]: [&Vertex; 2]| {
                    solved.map_or_else(
                        || self.full_edge(v1.lat, v1.lon, v2.lat, v2.lon),
                        |solved| self.finish(setup, &solved),
                    )
                };
                [finish(&sa, ra, a), finish(&sb, rb, b)]
            }
            (start_a, start_b) => [
                self.complete(start_a, a[0], a[1]),
                self.complete(start_b, b[0], b[1]),
            ],
        }
    }

    /// The terms of the edge from `v1` to `v2` once started: directly, by the iteration,
    /// or (outside the kernel's domain, or without convergence) by the library.
    fn complete(&self, start: Option<Start>, v1: &Vertex, v2: &Vertex) -> EdgeTerms {
        let solved = match start {
            Some(Start::Direct(terms)) => return terms,
            Some(Start::Iterate(setup)) => {
                let mut search = Search::new(&setup, self.tiny);
                self.search(&setup, &mut search)
                    .map(|solved| self.finish(&setup, &solved))
            }
            None => None,
        };
        solved.unwrap_or_else(|| self.full_edge(v1.lat, v1.lon, v2.lat, v2.lon))
    }

    /// The library's general solution.
    pub(crate) fn full_edge(&self, lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> EdgeTerms {
        let (_, distance, _, _, _, _, _, _, _, area) =
            self.geodesic
                ._gen_inverse(lat1, lon1, lat2, lon2, DISTANCE | AREA);
        EdgeTerms { distance, area }
    }

    /// The short-line solution's start (or, for the very shortest lines, the solution), or
    /// `None` for an edge outside this kernel's domain.
    fn start(&self, v1: &Vertex, v2: &Vertex) -> Option<Start> {
        let in_range =
            v1.alat <= 90.0 && v2.alat <= 90.0 && v1.lon.abs() <= 180.0 && v2.lon.abs() <= 180.0;
        // Within ±180° each, the difference is exact to rounding and needs no wrapping below
        // 90°; wider (and antimeridian-crossing) edges take the general path.
        let lon12 = v2.lon - v1.lon;
        if !in_range || lon12.abs() >= 90.0 {
            return None;
        }
        let mut lonsign = if lon12 >= 0.0 { 1.0 } else { -1.0 };
        let lon12 = ang_round(lon12.abs());
        let lam12 = lon12.to_radians();
        let (slam12, clam12) = sincosd(lon12);
        if slam12 == 0.0 {
            return None; // meridional
        }
        // Canonical order: |lat1| >= |lat2|, lat1 <= 0. The reduced latitude's sine is odd
        // in the latitude and its cosine even, so each end's figures are its vertex's with
        // the sign the canonical latitude has (as `reduced` of it would give).
        let (mut v1, mut v2) = (v1, v2);
        let swapp = if v1.alat < v2.alat { -1.0 } else { 1.0 };
        if swapp < 0.0 {
            lonsign = -lonsign;
            std::mem::swap(&mut v1, &mut v2);
        }
        let lat1 = ang_round(v1.lat);
        let latsign = if lat1 < 0.0 { 1.0 } else { -1.0 };
        if v1.alat == 90.0 {
            return None;
        }
        let sbet1 = v1.sbet.copysign(lat1 * latsign);
        let cbet1 = v1.cbet;
        let mut sbet2 = v2.sbet.copysign(ang_round(v2.lat) * latsign);
        let mut cbet2 = v2.cbet;
        let mut dn2 = v2.dn;
        if cbet1 < -sbet1 {
            if cbet2 == cbet1 {
                sbet2 = if sbet2 < 0.0 { sbet1 } else { -sbet1 };
                dn2 = v1.dn;
            }
        } else if sbet2.abs() == -sbet1 {
            cbet2 = cbet1;
        }
        if sbet1 == 0.0 {
            return None; // equatorial
        }
        let dn1 = v1.dn;
        let ends = Ends {
            sbet1,
            cbet1,
            dn1,
            sbet2,
            cbet2,
            dn2,
        };

        // Karney's starting estimate for a short line: a great circle on the auxiliary sphere
        // with the longitude scaled by the mean of `dn`.
        let sbet12 = sbet2 * cbet1 - cbet2 * sbet1;
        let cbet12 = cbet2 * cbet1 + sbet2 * sbet1;
        let sbet12a = sbet2 * cbet1 + cbet2 * sbet1;
        if !(cbet12 >= 0.0 && sbet12 < 0.5 && cbet2 * lam12 < 0.5) {
            return None;
        }
        let mut sbetm2 = (sbet1 + sbet2) * (sbet1 + sbet2);
        sbetm2 /= sbetm2 + (cbet1 + cbet2) * (cbet1 + cbet2);
        let dnm = (1.0 + self.ep2 * sbetm2).sqrt();
        let omg12 = lam12 / (self.f1 * dnm);
        let (somg12s, comg12s) = sin_cos(omg12);
        let mut salp1 = cbet2 * somg12s;
        let mut calp1 = if comg12s >= 0.0 {
            sbet12 + cbet2 * sbet1 * somg12s * somg12s / (1.0 + comg12s)
        } else {
            sbet12a - cbet2 * sbet1 * somg12s * somg12s / (1.0 - comg12s)
        };
        let ssig12 = (salp1 * salp1 + calp1 * calp1).sqrt();
        let csig12 = sbet1 * sbet2 + cbet1 * cbet2 * comg12s;

        let sign = swapp * lonsign * latsign;
        if ssig12 < self.etol2 {
            // So short that the estimate is the solution (Karney's bound on `etol2`).
            let (mut salp2, mut calp2) = (
                cbet1 * somg12s,
                sbet12
                    - cbet1
                        * sbet2
                        * if comg12s >= 0.0 {
                            somg12s * somg12s / (1.0 + comg12s)
                        } else {
                            1.0 - comg12s
                        },
            );
            norm(&mut salp2, &mut calp2);
            let sig12 = atan2(ssig12, csig12);
            let distance = sig12 * self.b * dnm;
            if salp1 > 0.0 {
                norm(&mut salp1, &mut calp1);
            } else {
                (salp1, calp1) = (1.0, 0.0);
            }
            let calp0 = (calp1 * calp1 + (salp1 * sbet1) * (salp1 * sbet1)).sqrt();
            let k2 = calp0 * calp0 * self.ep2;
            let eps = k2 / (2.0 * (1.0 + (1.0 + k2).sqrt()) + k2);
            let solution = Solution {
                line: Auxiliary::new(&ends, salp1, calp1, calp2),
                distance,
                salp1,
                calp1,
                salp2,
                calp2,
                somg12: somg12s,
                comg12: comg12s,
                eps,
            };
            return Some(Start::Direct(self.terms(&ends, sign, &solution)));
        }
        if csig12 < 0.0 {
            return None;
        }
        if salp1 > 0.0 {
            norm(&mut salp1, &mut calp1);
        } else {
            (salp1, calp1) = (1.0, 0.0);
        }
        Some(Start::Iterate(Setup {
            ends,
            sign,
            salp1,
            calp1,
            slam12,
            clam12,
        }))
    }

    /// The terms of an iterated edge from the iteration's solution.
    fn finish(&self, setup: &Setup, solved: &Solved) -> EdgeTerms {
        let l = &solved.lambda;
        let eps = l.eps;
        let mut c1 = [0.0; ORDER + 1];
        c1_coefficients(eps, &mut c1);
        let a1 = a1m1(eps) + 1.0;
        let b1 = sin_series(l.line.ssig2, l.line.csig2, &c1)
            - sin_series(l.line.ssig1, l.line.csig1, &c1);
        let distance = self.b * a1 * (l.sig12 + b1);
        let (sdomg12, cdomg12) = sin_cos(l.domg12);
        let (slam12, clam12) = (setup.slam12, setup.clam12);
        let solution = Solution {
            // The last λ12 evaluation computed them from the same azimuths, with the same
            // operations as `Auxiliary::new`.
            line: l.line,
            distance,
            salp1: solved.salp1,
            calp1: solved.calp1,
            salp2: l.salp2,
            calp2: l.calp2,
            somg12: slam12 * cdomg12 - clam12 * sdomg12,
            comg12: clam12 * cdomg12 + slam12 * sdomg12,
            eps,
        };
        self.terms(&setup.ends, setup.sign, &solution)
    }

    /// Distance and area term from a solved line (`sign`: the canonical order's signs).
    fn terms(&self, ends: &Ends, sign: f64, solution: &Solution) -> EdgeTerms {
        let Solution {
            distance,
            salp1,
            calp1,
            salp2,
            calp2,
            somg12,
            comg12,
            eps,
            ..
        } = *solution;
        let (sbet1, cbet1, sbet2, cbet2) = (ends.sbet1, ends.cbet1, ends.sbet2, ends.cbet2);
        let mut area = self.ellipsoidal_area(&solution.line, eps);
        let alp12 = if comg12 > -FRAC_1_SQRT_2 && sbet2 - sbet1 < 1.75 {
            let domg12 = 1.0 + comg12;
            let dbet1 = 1.0 + cbet1;
            let dbet2 = 1.0 + cbet2;
            2.0 * atan2(
                somg12 * (sbet1 * dbet2 + sbet2 * dbet1),
                domg12 * (sbet1 * sbet2 + dbet1 * dbet2),
            )
        } else {
            let mut salp12 = salp2 * calp1 - calp2 * salp1;
            let mut calp12 = calp2 * calp1 + salp2 * salp1;
            if salp12 == 0.0 && calp12 < 0.0 {
                salp12 = self.tiny * calp1;
                calp12 = -1.0;
            }
            salp12.atan2(calp12)
        };
        area += self.c2 * alp12;
        area *= sign;
        EdgeTerms {
            distance: distance + 0.0,
            area: area + 0.0,
        }
    }

    /// Sine and cosine of the reduced latitude of `lat` (|lat| ≤ 90).
    fn reduced(&self, lat: f64) -> (f64, f64) {
        let (mut s, mut c) = sincosd(lat);
        s *= self.f1;
        norm(&mut s, &mut c);
        (s, c.max(self.tiny))
    }

    /// The ellipsoidal part of the area term: A4 times the difference of the C4 series.
    fn ellipsoidal_area(&self, line: &Auxiliary, eps: f64) -> f64 {
        if line.calp0 == 0.0 || line.salp0 == 0.0 {
            return 0.0;
        }
        let a4 = self.a * self.a * line.calp0 * line.salp0 * self.e2;
        let mut c4 = [0.0; ORDER];
        self.geodesic._C4f(eps, &mut c4);
        a4 * (cos_series(line.ssig2, line.csig2, &c4) - cos_series(line.ssig1, line.csig1, &c4))
    }

    /// Karney's Newton iteration (with bisection as a safeguard) for the azimuth at the first
    /// end, from where `search` stands; `None` if it did not converge within the step cap.
    fn search(&self, setup: &Setup, search: &mut Search) -> Option<Solved> {
        while search.step < MAX_STEPS {
            let lambda = self.lambda12(setup, search.salp1, search.calp1);
            if let Some(solved) = search.advance(lambda, self.tolb)? {
                return Some(solved);
            }
        }
        None
    }

    /// [`Kernel::search`] for two lines at once, step by step side by side while both
    /// iterate; the one left over continues alone.
    fn solve_pair(&self, a: &Setup, b: &Setup) -> (Option<Solved>, Option<Solved>) {
        let (mut search_a, mut search_b) = (Search::new(a, self.tiny), Search::new(b, self.tiny));
        while search_a.step < MAX_STEPS {
            let lambda_a = self.lambda12(a, search_a.salp1, search_a.calp1);
            let lambda_b = self.lambda12(b, search_b.salp1, search_b.calp1);
            match (
                search_a.advance(lambda_a, self.tolb),
                search_b.advance(lambda_b, self.tolb),
            ) {
                (Some(None), Some(None)) => {}
                (Some(None), done_b) => return (self.search(a, &mut search_a), done_b.flatten()),
                (done_a, Some(None)) => return (done_a.flatten(), self.search(b, &mut search_b)),
                (done_a, done_b) => return (done_a.flatten(), done_b.flatten()),
            }
        }
        (None, None)
    }

    /// λ12 − λ12(target) for azimuth α1, with what the solution needs and an approximate
    /// derivative (see the module comment).
    #[inline(always)]
    fn lambda12(&self, setup: &Setup, salp1: f64, calp1: f64) -> Lambda {
        let (e, slam120, clam120) = (&setup.ends, setup.slam12, setup.clam12);
        let calp1 = if e.sbet1 == 0.0 && calp1 == 0.0 {
            -self.tiny
        } else {
            calp1
        };
        let salp0 = salp1 * e.cbet1;
        let calp0 = (calp1 * calp1 + (salp1 * e.sbet1) * (salp1 * e.sbet1)).sqrt();
        let (mut ssig1, mut csig1) = (e.sbet1, calp1 * e.cbet1);
        let (somg1, comg1) = (salp0 * e.sbet1, calp1 * e.cbet1);
        norm(&mut ssig1, &mut csig1);
        let salp2 = if e.cbet2 != e.cbet1 {
            salp0 / e.cbet2
        } else {
            salp1
        };
        let calp2 = if e.cbet2 != e.cbet1 || e.sbet2.abs() != -e.sbet1 {
            ((calp1 * e.cbet1) * (calp1 * e.cbet1)
                + if e.cbet1 < -e.sbet1 {
                    (e.cbet2 - e.cbet1) * (e.cbet1 + e.cbet2)
                } else {
                    (e.sbet1 - e.sbet2) * (e.sbet1 + e.sbet2)
                })
            .sqrt()
                / e.cbet2
        } else {
            calp1.abs()
        };
        let (mut ssig2, mut csig2) = (e.sbet2, calp2 * e.cbet2);
        let (somg2, comg2) = (salp0 * e.sbet2, calp2 * e.cbet2);
        norm(&mut ssig2, &mut csig2);
        let sig12 = atan2(
            (csig1 * ssig2 - ssig1 * csig2).max(0.0),
            csig1 * csig2 + ssig1 * ssig2,
        );
        let somg12 = (comg1 * somg2 - somg1 * comg2).max(0.0);
        let comg12 = comg1 * comg2 + somg1 * somg2;
        let eta = atan2(
            somg12 * clam120 - comg12 * slam120,
            comg12 * clam120 + somg12 * slam120,
        );
        let k2 = calp0 * calp0 * self.ep2;
        let eps = k2 / (2.0 * (1.0 + (1.0 + k2).sqrt()) + k2);
        let mut c3 = [0.0; ORDER];
        self.geodesic._C3f(eps, &mut c3);
        let b312 = sin_series(ssig2, csig2, &c3) - sin_series(ssig1, csig1, &c3);
        let domg12 = -self.f * self.geodesic._A3f(eps) * salp0 * (sig12 + b312);
        let v = eta + domg12;
        let dv = if calp2 == 0.0 {
            -2.0 * self.f1 * e.dn1 / e.sbet1
        } else {
            // The reduced length without its J12 term (relative error O(e'² σ12²)).
            let m12b = e.dn2 * (csig1 * ssig2) - e.dn1 * (ssig1 * csig2);
            m12b * self.f1 / (calp2 * e.cbet2)
        };
        Lambda {
            v,
            salp2,
            calp2,
            sig12,
            line: Auxiliary {
                salp0,
                calp0,
                ssig1,
                csig1,
                ssig2,
                csig2,
            },
            eps,
            domg12,
            dv,
        }
    }
}

/// An edge end: its position (degrees) and, for its latitude rounded as Karney's and taken
/// positive, the sine and cosine of the reduced latitude and `sqrt(1 + e'² sin² β)`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Vertex {
    lat: f64,
    lon: f64,
    alat: f64,
    sbet: f64,
    cbet: f64,
    dn: f64,
}

impl Vertex {
    pub(crate) fn lon(&self) -> f64 {
        self.lon
    }
}

/// Reduced latitudes of the two ends (canonical order) and `sqrt(1 + e'² sin² β)`.
struct Ends {
    sbet1: f64,
    cbet1: f64,
    dn1: f64,
    sbet2: f64,
    cbet2: f64,
    dn2: f64,
}

/// An iterated line's ends, signs, starting azimuth and target longitude difference.
struct Setup {
    ends: Ends,
    /// Product of the canonical order's signs, applied to the area term at the end.
    sign: f64,
    salp1: f64,
    calp1: f64,
    slam12: f64,
    clam12: f64,
}

/// How an edge's solution starts.
enum Start {
    /// So short that the first estimate is the solution.
    Direct(EdgeTerms),
    /// Solved by [`Kernel::search`].
    Iterate(Setup),
}

/// A line's azimuth at the equator and its ends' arc lengths from there on the auxiliary
/// sphere (sine and cosine of each).
#[derive(Clone, Copy)]
struct Auxiliary {
    salp0: f64,
    calp0: f64,
    ssig1: f64,
    csig1: f64,
    ssig2: f64,
    csig2: f64,
}

impl Auxiliary {
    /// From the azimuths at the ends.
    fn new(ends: &Ends, salp1: f64, calp1: f64, calp2: f64) -> Self {
        let (mut ssig1, mut csig1) = (ends.sbet1, calp1 * ends.cbet1);
        let (mut ssig2, mut csig2) = (ends.sbet2, calp2 * ends.cbet2);
        norm(&mut ssig1, &mut csig1);
        norm(&mut ssig2, &mut csig2);
        Auxiliary {
            salp0: salp1 * ends.cbet1,
            calp0: (calp1 * calp1 + (salp1 * ends.sbet1) * (salp1 * ends.sbet1)).sqrt(),
            ssig1,
            csig1,
            ssig2,
            csig2,
        }
    }
}

/// A solved line: what its distance and area term are made of.
#[derive(Clone, Copy)]
struct Solution {
    line: Auxiliary,
    distance: f64,
    salp1: f64,
    calp1: f64,
    salp2: f64,
    calp2: f64,
    somg12: f64,
    comg12: f64,
    eps: f64,
}

/// Where Karney's Newton iteration (bracketed by bisection) stands for one line.
struct Search {
    step: usize,
    salp1: f64,
    calp1: f64,
    salp1a: f64,
    calp1a: f64,
    salp1b: f64,
    calp1b: f64,
    tripn: bool,
    tripb: bool,
}

impl Search {
    fn new(setup: &Setup, tiny: f64) -> Self {
        Search {
            step: 0,
            salp1: setup.salp1,
            calp1: setup.calp1,
            salp1a: tiny,
            calp1a: 1.0,
            salp1b: tiny,
            calp1b: -1.0,
            tripn: false,
            tripb: false,
        }
    }

    /// Takes λ12 evaluated at the current azimuth: the solution if it has converged,
    /// `Some(None)` after moving to the next azimuth, `None` if λ12 is not a number.
    fn advance(&mut self, lambda: Lambda, tolb: f64) -> Option<Option<Solved>> {
        let step = self.step;
        self.step += 1;
        let v = lambda.v;
        if self.tripb || v.abs() < if self.tripn { 8.0 } else { 1.0 } * TOL0 {
            return Some(Some(Solved {
                salp1: self.salp1,
                calp1: self.calp1,
                lambda,
            }));
        }
        if v.is_nan() {
            return None;
        }
        let (salp1, calp1) = (self.salp1, self.calp1);
        if v > 0.0 && (step > MAX_NEWTON || calp1 / salp1 > self.calp1b / self.salp1b) {
            (self.salp1b, self.calp1b) = (salp1, calp1);
        } else if v < 0.0 && (step > MAX_NEWTON || calp1 / salp1 < self.calp1a / self.salp1a) {
            (self.salp1a, self.calp1a) = (salp1, calp1);
        }
        if step < MAX_NEWTON && lambda.dv > 0.0 {
            let dalp1 = -v / lambda.dv;
            let (sdalp1, cdalp1) = sin_cos(dalp1);
            let nsalp1 = salp1 * cdalp1 + calp1 * sdalp1;
            if nsalp1 > 0.0 && dalp1.abs() < std::f64::consts::PI {
                let (mut s, mut c) = (nsalp1, calp1 * cdalp1 - salp1 * sdalp1);
                norm(&mut s, &mut c);
                (self.salp1, self.calp1) = (s, c);
                self.tripn = v.abs() <= 16.0 * TOL0;
                return Some(None);
            }
        }
        let (mut s, mut c) = (
            (self.salp1a + self.salp1b) / 2.0,
            (self.calp1a + self.calp1b) / 2.0,
        );
        norm(&mut s, &mut c);
        (self.salp1, self.calp1) = (s, c);
        self.tripn = false;
        self.tripb = (self.salp1a - s).abs() + (self.calp1a - c) < tolb
            || (s - self.salp1b).abs() + (c - self.calp1b) < tolb;
        Some(None)
    }
}

/// One evaluation of λ12 and its by-products.
struct Lambda {
    v: f64,
    salp2: f64,
    calp2: f64,
    sig12: f64,
    line: Auxiliary,
    eps: f64,
    domg12: f64,
    dv: f64,
}

struct Solved {
    salp1: f64,
    calp1: f64,
    lambda: Lambda,
}

/// Whether the edge from longitude `lon1` to `lon2` crosses the prime meridian eastwards
/// (+1) or westwards (−1): a ring's count of crossings tells whether it encircles a pole.
/// The same rule as `geographiclib`'s polygon area.
pub(crate) fn transit(lon1: f64, lon2: f64) -> i64 {
    // Within (−180, 180) each and less than 180° apart (a ring's usual edge), normalising
    // changes nothing and the difference's sign is that of the plain difference.
    let plain = lon2 - lon1;
    let (lon12, lon1, lon2) = if lon1.abs() < 180.0 && lon2.abs() < 180.0 && plain.abs() < 180.0 {
        (plain, lon1, lon2)
    } else {
        (
            ang_diff(lon1, lon2),
            ang_normalize(lon1),
            ang_normalize(lon2),
        )
    };
    if lon12 > 0.0 && ((lon1 < 0.0 && lon2 >= 0.0) || (lon1 > 0.0 && lon2 == 0.0)) {
        1
    } else if lon12 < 0.0 && lon1 >= 0.0 && lon2 < 0.0 {
        -1
    } else {
        0
    }
}

/// `x` reduced to (−180, 180] degrees.
fn ang_normalize(x: f64) -> f64 {
    if x > -180.0 && x < 180.0 {
        return x;
    }
    let z = if x.is_finite() { x % 360.0 } else { f64::NAN };
    let z = if x == 0.0 { x } else { z };
    let y = if z < -180.0 {
        z + 360.0
    } else if z < 180.0 {
        z
    } else {
        z - 360.0
    };
    if y == -180.0 { 180.0 } else { y }
}

/// `y − x` reduced to [−180, 180] degrees, rounded once (error-free sum of the parts).
fn ang_diff(x: f64, y: f64) -> f64 {
    let (d, t) = two_sum(ang_normalize(-x), ang_normalize(y));
    let d = ang_normalize(d);
    if d == 180.0 && t > 0.0 {
        two_sum(-180.0, t).0
    } else {
        two_sum(d, t).0
    }
}

fn two_sum(u: f64, v: f64) -> (f64, f64) {
    let s = u + v;
    let up = s - v;
    let vpp = s - up;
    (s, -((up - u) + (vpp - v)))
}

/// Below this magnitude (radians), [`sin_cos`] and [`atan2`] use Taylor series. The first
/// omitted terms, relative to the result, are at most: sine x⁶/5040 ≤ 2.0e-22, cosine
/// x⁸/40320 ≤ 2.5e-29, arctangent t⁶/7 ≤ 1.5e-19; half an ulp is 1.1e-16. The few roundings
/// of the Horner evaluation are what the library functions also allow (≤ 1 ulp).
const SMALL: f64 = 1e-3;

/// `x.sin_cos()`, by series for |x| < [`SMALL`].
fn sin_cos(x: f64) -> (f64, f64) {
    if x.abs() < SMALL {
        let x2 = x * x;
        (
            x * (1.0 - x2 / 6.0 * (1.0 - x2 / 20.0)),
            1.0 - x2 / 2.0 * (1.0 - x2 / 12.0 * (1.0 - x2 / 30.0)),
        )
    } else {
        x.sin_cos()
    }
}

/// `y.atan2(x)`, by series when x > 0 and |y/x| < [`SMALL`].
fn atan2(y: f64, x: f64) -> f64 {
    if x > 0.0 && y.abs() < SMALL * x {
        let t = y / x;
        let t2 = t * t;
        t * (1.0 - t2 * (1.0 / 3.0 - t2 / 5.0))
    } else {
        y.atan2(x)
    }
}

/// Scales `(x, y)` to unit length. Components here are at most 1 in magnitude and never
/// both zero, so `sqrt` of the sum of squares neither overflows nor underflows to zero.
fn norm(x: &mut f64, y: &mut f64) {
    let r = (*x * *x + *y * *y).sqrt();
    *x /= r;
    *y /= r;
}

/// Karney's rounding of tiny angles, so that values below 1/16 keep a fixed absolute grid.
fn ang_round(x: f64) -> f64 {
    const Z: f64 = 1.0 / 16.0;
    let y = x.abs();
    let y = if y < Z { Z - (Z - y) } else { y };
    if x == 0.0 { 0.0 } else { y.copysign(x) }
}

/// Sine and cosine of `x` degrees, |x| ≤ 90, reduced to ±45° exactly (as Karney's
/// `sincosd`) so that 90° gives exactly (1, 0).
fn sincosd(x: f64) -> (f64, f64) {
    let (s, c) = if x.abs() <= 45.0 {
        sin_cos(x.to_radians())
    } else if x > 0.0 {
        let (s, c) = sin_cos((x - 90.0).to_radians());
        (c, -s)
    } else {
        let (s, c) = sin_cos((x + 90.0).to_radians());
        (-c, s)
    };
    (if s == 0.0 { s.copysign(x) } else { s }, c + 0.0)
}

/// Σ_{l=1}^{N-1} c[l] sin(2 l σ), from sin σ and cos σ.
fn sin_series<const N: usize>(sinx: f64, cosx: f64, c: &[f64; N]) -> f64 {
    let (y0, _) = clenshaw(sinx, cosx, &c[1..]);
    2.0 * sinx * cosx * y0
}

/// Σ_{l=0}^{N-1} c[l] cos((2 l + 1) σ), from sin σ and cos σ.
fn cos_series<const N: usize>(sinx: f64, cosx: f64, c: &[f64; N]) -> f64 {
    let (y0, y1) = clenshaw(sinx, cosx, c);
    cosx * (y0 - y1)
}

/// Clenshaw's recurrence y_k = 2 cos 2σ y_{k+1} − y_{k+2} + c_k down the coefficients;
/// returns the last two values, from which both series above are formed.
#[inline]
fn clenshaw(sinx: f64, cosx: f64, c: &[f64]) -> (f64, f64) {
    let ar = 2.0 * (cosx - sinx) * (cosx + sinx);
    let (mut y0, mut y1) = (0.0, 0.0);
    for &ck in c.iter().rev() {
        let next = ar * y0 - y1 + ck;
        y1 = y0;
        y0 = next;
    }
    (y0, y1)
}

/// A1 − 1 of the distance integral, to order ε⁶ (Karney 2013, eq. 17).
fn a1m1(eps: f64) -> f64 {
    let e2 = eps * eps;
    let t = e2 * (e2 * (e2 + 4.0) + 64.0) / 256.0;
    (t + eps) / (1.0 - eps)
}

/// C1l of the distance integral, l = 1..6, to order ε⁶ (Karney 2013, eq. 18).
fn c1_coefficients(eps: f64, c: &mut [f64; ORDER + 1]) {
    let e2 = eps * eps;
    let e3 = e2 * eps;
    let e4 = e2 * e2;
    let e5 = e4 * eps;
    let e6 = e3 * e3;
    c[1] = eps * (-16.0 + e2 * (6.0 - e2)) / 32.0;
    c[2] = e2 * (-128.0 + e2 * (64.0 - 9.0 * e2)) / 2048.0;
    c[3] = e3 * (-16.0 + 9.0 * e2) / 768.0;
    c[4] = e4 * (-5.0 + 3.0 * e2) / 512.0;
    c[5] = -7.0 * e5 / 1280.0;
    c[6] = -7.0 * e6 / 2048.0;
}

#[cfg(test)]
mod test {
    use proptest::prelude::*;

    use super::*;

    fn kernel() -> Kernel {
        Kernel::new(Geodesic::wgs84())
    }

    /// Distance within 1e-14 relative plus 10 nm: σ12 comes from a cross product of unit
    /// vectors, so both implementations round it to ~ε absolute, b ε ≈ 1.4 nm. The area term within 1e-14 of its magnitude
    /// or of the edge's rectangle to the equator, plus 1e-4 m²: its ellipsoidal part is a
    /// difference of two series values of order a² e² ≈ 3e11 m², so both implementations
    /// carry rounding noise of ~1e-5 m² on every edge, however short.
    fn assert_close(k: &Kernel, lat1: f64, lon1: f64, lat2: f64, lon2: f64) {
        let fast = k.edge(lat1, lon1, lat2, lon2);
        let full = k.full_edge(lat1, lon1, lat2, lon2);
        let ds = (fast.distance - full.distance).abs();
        assert!(
            ds <= 1e-14 * full.distance.abs() + 1e-8,
            "distance {} vs {} for {lat1},{lon1} -> {lat2},{lon2}",
            fast.distance,
            full.distance
        );
        let scale = full.area.abs().max(full.distance * 6.4e6);
        let da = (fast.area - full.area).abs();
        assert!(
            da <= 1e-14 * scale + 1e-4,
            "area {} vs {} ({da:e}) for {lat1},{lon1} -> {lat2},{lon2}",
            fast.area,
            full.area
        );
    }

    #[test]
    fn small_angle_series_match_the_library_functions() {
        for i in 0..=2000 {
            let x = SMALL * (i as f64 / 1000.0 - 1.0) * (1.0 - 1e-12);
            for x in [x, x * 1e-3, x * 1e-9, x * 1e-200] {
                let (s, c) = sin_cos(x);
                let (es, ec) = x.sin_cos();
                assert!((s - es).abs() <= 2.0 * f64::EPSILON * es.abs(), "sin {x:e}");
                assert!((c - ec).abs() <= f64::EPSILON, "cos {x:e}");
                let a = atan2(x, 1.0);
                assert!(
                    (a - x.atan2(1.0)).abs() <= 2.0 * f64::EPSILON * a.abs(),
                    "atan {x:e}"
                );
                let a = atan2(x * 0.37, 0.37);
                assert!((a - (x * 0.37).atan2(0.37)).abs() <= 2.0 * f64::EPSILON * a.abs());
            }
        }
        assert_eq!(sin_cos(0.0), (0.0, 1.0));
        assert_eq!(atan2(-0.0, 1.0).to_bits(), (-0.0f64).to_bits());
        assert!(atan2(f64::NAN, 1.0).is_nan());
    }

    fn short(k: &Kernel, lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> Option<Start> {
        k.start(&k.vertex(lat1, lon1), &k.vertex(lat2, lon2))
    }

    #[test]
    fn short_edges_take_the_short_path() {
        let k = kernel();
        assert!(short(&k, 10.0, 20.0, 10.01, 20.02).is_some());
        assert!(short(&k, -45.0, 170.0, -44.0, 171.5).is_some());
        // Meridional, equatorial, antimeridian-crossing and long edges do not.
        assert!(short(&k, 10.0, 20.0, 11.0, 20.0).is_none());
        assert!(short(&k, 0.0, 20.0, 0.0, 21.0).is_none());
        assert!(short(&k, 10.0, 179.9, 10.0, -179.9).is_none());
        assert!(short(&k, -30.0, 0.0, 40.0, 80.0).is_none());
    }

    #[test]
    fn special_edges_agree_with_the_full_algorithm() {
        let k = kernel();
        let cases = [
            (10.0, 20.0, 11.0, 20.0),
            (0.0, 20.0, 0.0, 21.0),
            (0.0, 0.0, 1e-9, 1e-9),
            (89.999999, 0.0, 89.999999, 60.0),
            (-90.0, 0.0, -89.0, 10.0),
            (90.0, 0.0, 89.5, 45.0),
            (45.0, 45.0, 45.0, 45.0),
            (1e-300, 0.0, 1e-300, 1e-12),
            (-60.0, -179.99, -60.001, 179.99),
            (30.0, 10.0, -30.0, 11.0),
            (0.5, 0.0, -0.5, 179.0),
        ];
        for (lat1, lon1, lat2, lon2) in cases {
            assert_close(&k, lat1, lon1, lat2, lon2);
            assert_close(&k, lat2, lon2, lat1, lon1);
        }
    }

    proptest! {
        #[test]
        fn short_edges_agree_with_the_full_algorithm(
            lat in -89.9f64..89.9,
            lon in -179.9f64..179.9,
            dlat in -0.5f64..0.5,
            dlon in -0.5f64..0.5,
            scale in prop::sample::select(vec![1e-7, 1e-5, 1e-3, 1e-1, 1.0, 20.0]),
        ) {
            let lat2 = (lat + dlat * scale).clamp(-90.0, 90.0);
            let lon2 = (lon + dlon * scale).clamp(-180.0, 180.0);
            assert_close(&kernel(), lat, lon, lat2, lon2);
        }

        /// Two edges side by side give exactly what each gives alone, whichever paths
        /// (direct, iterated, library) they take.
        #[test]
        fn edge_pairs_are_the_edges_alone(
            ends in prop::collection::vec((-90f64..=90.0, -180f64..=180.0), 4),
            scale in prop::sample::select(vec![1e-9, 1e-5, 1e-2, 1.0, 360.0]),
        ) {
            let k = kernel();
            let v: Vec<Vertex> = ends
                .iter()
                .map(|&(lat, lon)| {
                    let (lat0, lon0) = ends[0];
                    k.vertex(
                        (lat0 + (lat - lat0) * scale / 360.0).clamp(-90.0, 90.0),
                        (lon0 + (lon - lon0) * scale / 360.0).clamp(-180.0, 180.0),
                    )
                })
                .collect();
            let pair = k.edge_pair([&v[0], &v[1]], [&v[2], &v[3]]);
            prop_assert_eq!(pair[0], k.edge_between(&v[0], &v[1]));
            prop_assert_eq!(pair[1], k.edge_between(&v[2], &v[3]));
        }

        #[test]
        fn any_edge_agrees_with_the_full_algorithm(
            lat1 in -90f64..=90.0,
            lon1 in -180f64..=180.0,
            lat2 in -90f64..=90.0,
            lon2 in -180f64..=180.0,
        ) {
            assert_close(&kernel(), lat1, lon1, lat2, lon2);
        }
    }
}
