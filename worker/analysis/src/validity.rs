//! OGC simple-feature validity, with the rules GEOS applies by default.
//!
//! Polygons and multipolygons are checked in near-linear time: every ring's segments, in
//! ring order, go into a packed hierarchy of bounding boxes (consecutive segments of a ring
//! are close to each other, so grouping them in file order makes tight boxes without any
//! sorting); each leaf is then compared only with the leaves whose boxes overlap it. The
//! same hierarchy answers point-in-ring queries for the containment rules. The checks, in
//! the order GEOS reports them:
//!
//! 1. coordinates are finite; rings are closed; a ring has at least four positions once
//!    consecutive repeats are dropped (a line, two distinct positions);
//! 2. no ring crosses or overlaps itself or another ring, and a ring touches itself nowhere
//!    ("Ring Self-intersection"; GEOS's default, non-ESRI rule);
//! 3. every hole lies inside its shell, no hole inside another, no shell of a multipolygon
//!    inside another's interior;
//! 4. the interior is connected: rings touching each other at points never close a cycle.
//!
//! Work is bounded: a geometry whose pairwise comparisons exceed a budget proportional to
//! its size (hostile shapes such as long interleaved spirals) is reported unchecked rather
//! than hanging the analysis.

use std::collections::HashSet;
use std::ops::Range;

use super::geometry::{Geometry, GeometryType, Xy};
use super::stop::Stop;

/// Why a geometry is invalid, with a position near the problem.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Invalid {
    pub(crate) reason: &'static str,
    pub(crate) location: Option<Xy>,
}

/// Outcome of a validity check.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Validity {
    Valid,
    Invalid(Invalid),
    /// The check ran out of its work budget.
    Unchecked,
}

pub(crate) const TOO_FEW_POINTS: &str = "Too few points";
pub(crate) const NOT_CLOSED: &str = "Ring not closed";
pub(crate) const INVALID_COORDINATE: &str = "Invalid Coordinate";
pub(crate) const SELF_INTERSECTION: &str = "Self-intersection";
pub(crate) const RING_SELF_INTERSECTION: &str = "Ring Self-intersection";
pub(crate) const HOLE_OUTSIDE_SHELL: &str = "Hole lies outside shell";
pub(crate) const NESTED_HOLES: &str = "Holes are nested";
pub(crate) const NESTED_SHELLS: &str = "Nested shells";
pub(crate) const DISCONNECTED_INTERIOR: &str = "Interior is disconnected";

type Check = Result<(), Outcome>;

/// Why a check stopped early.
enum Outcome {
    Invalid(Invalid),
    OverBudget,
}

fn invalid(reason: &'static str, location: Option<Xy>) -> Outcome {
    Outcome::Invalid(Invalid { reason, location })
}

/// Checks `geometry` against the simple-feature rules; a raised `stop` ends the check
/// (as [`Validity::Unchecked`]) at its next unit of work.
pub(crate) fn check(geometry: &Geometry, stop: &Stop) -> Validity {
    match check_any(geometry, stop) {
        Ok(()) => Validity::Valid,
        Err(Outcome::Invalid(found)) => Validity::Invalid(found),
        Err(Outcome::OverBudget) => Validity::Unchecked,
    }
}

fn check_any(geometry: &Geometry, stop: &Stop) -> Check {
    match geometry.kind {
        GeometryType::Point | GeometryType::MultiPoint => finite(&geometry.points),
        GeometryType::LineString | GeometryType::MultiLineString => {
            for index in 0..geometry.line_ends.len() {
                let line = geometry.line(index);
                finite(line)?;
                if !line.is_empty() && distinct_count(line) < 2 {
                    return Err(invalid(TOO_FEW_POINTS, line.first().copied()));
                }
            }
            Ok(())
        }
        GeometryType::Polygon | GeometryType::MultiPolygon => {
            Polygons::build(geometry, stop)?.check()
        }
        GeometryType::GeometryCollection => geometry
            .members
            .iter()
            .try_for_each(|member| check_any(member, stop)),
    }
}

fn finite(points: &[Xy]) -> Check {
    match points
        .iter()
        .find(|p| !(p[0].is_finite() && p[1].is_finite()))
    {
        Some(&p) => Err(invalid(INVALID_COORDINATE, Some(p))),
        None => Ok(()),
    }
}

fn distinct_count(points: &[Xy]) -> usize {
    points.windows(2).filter(|w| w[0] != w[1]).count() + usize::from(!points.is_empty())
}

/// Segments per leaf, and children per node, of the box hierarchy.
const FANOUT: usize = 8;

type Bbox = [f64; 4];

fn bbox_of(a: Xy, b: Xy) -> Bbox {
    [
        a[0].min(b[0]),
        a[1].min(b[1]),
        a[0].max(b[0]),
        a[1].max(b[1]),
    ]
}

fn union(a: Bbox, b: Bbox) -> Bbox {
    [
        a[0].min(b[0]),
        a[1].min(b[1]),
        a[2].max(b[2]),
        a[3].max(b[3]),
    ]
}

fn overlaps(a: &Bbox, b: &Bbox) -> bool {
    a[0] <= b[2] && b[0] <= a[2] && a[1] <= b[3] && b[1] <= a[3]
}

fn contains(outer: &Bbox, inner: &Bbox) -> bool {
    outer[0] <= inner[0] && outer[1] <= inner[1] && outer[2] >= inner[2] && outer[3] >= inner[3]
}

/// The rings of a polygon or multipolygon, cleaned of repeated positions, with their
/// segments and box hierarchy.
struct Polygons {
    /// Ring positions back to back; each ring is closed (last equals first).
    points: Vec<Xy>,
    /// The ring of each segment. Rings are stored back to back and each adds one position
    /// more than it has segments, so segment `s` runs from `points[s + seg_ring[s]]` to the
    /// next position: no start index is stored. `u32` halves the largest per-segment array
    /// (a feature never has 4 billion rings: it would need far more bytes than any limit).
    seg_ring: Vec<u32>,
    /// Segment range of each ring.
    ring_segs: Vec<Range<usize>>,
    ring_part: Vec<usize>,
    ring_bbox: Vec<Bbox>,
    /// Ring range of each polygon; its first ring is the shell.
    part_rings: Vec<Range<usize>>,
    /// `levels[0]` boxes leaves of [`FANOUT`] segments; each next level boxes [`FANOUT`]
    /// nodes of the one below; the last level is the root.
    levels: Vec<Vec<Bbox>>,
    /// Points where two different rings touch: (ring, other ring, point).
    touches: Vec<(usize, usize, Xy)>,
    work: u64,
    budget: u64,
    stop: Stop,
}

impl Polygons {
    fn build(geometry: &Geometry, stop: &Stop) -> Result<Polygons, Outcome> {
        let mut polygons = Polygons {
            points: Vec::with_capacity(geometry.points.len()),
            seg_ring: Vec::with_capacity(geometry.points.len()),
            ring_segs: Vec::new(),
            ring_part: Vec::new(),
            ring_bbox: Vec::new(),
            part_rings: Vec::new(),
            levels: Vec::new(),
            touches: Vec::new(),
            work: 0,
            budget: 0,
            stop: stop.clone(),
        };
        for part in 0..geometry.part_ends.len() {
            let first_ring = polygons.ring_segs.len();
            for ring_index in geometry.part(part) {
                let ring = geometry.line(ring_index);
                finite(ring)?;
                let (Some(&first), Some(&last)) = (ring.first(), ring.last()) else {
                    return Err(invalid(TOO_FEW_POINTS, None));
                };
                if first != last {
                    return Err(invalid(NOT_CLOSED, Some(first)));
                }
                if distinct_count(ring) < 4 {
                    return Err(invalid(TOO_FEW_POINTS, Some(first)));
                }
                polygons.add_ring(ring, part)?;
            }
            if polygons.ring_segs.len() > first_ring {
                polygons
                    .part_rings
                    .push(first_ring..polygons.ring_segs.len());
            }
        }
        polygons.build_levels();
        let segments = polygons.seg_ring.len() as u64;
        polygons.budget = 256 * segments + (1 << 22);
        Ok(polygons)
    }

    fn add_ring(&mut self, ring: &[Xy], part: usize) -> Result<(), Outcome> {
        // Past u32 the check gives up (unchecked) rather than mislabel segments.
        let ring_id = u32::try_from(self.ring_segs.len()).map_err(|_| Outcome::OverBudget)?;
        let first_seg = self.seg_ring.len();
        let mut bbox = [
            f64::INFINITY,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NEG_INFINITY,
        ];
        let mut previous: Option<Xy> = None;
        for &p in ring {
            if previous == Some(p) {
                continue;
            }
            if previous.is_some() {
                self.seg_ring.push(ring_id);
            }
            bbox = union(bbox, [p[0], p[1], p[0], p[1]]);
            self.points.push(p);
            previous = Some(p);
        }
        self.ring_segs.push(first_seg..self.seg_ring.len());
        self.ring_part.push(part);
        self.ring_bbox.push(bbox);
        Ok(())
    }

    /// The ring of segment `s`.
    fn ring_of(&self, s: usize) -> usize {
        self.seg_ring[s] as usize
    }

    /// The index in `points` where segment `s` starts.
    fn seg_start(&self, s: usize) -> usize {
        s + self.ring_of(s)
    }

    fn segment(&self, s: usize) -> (Xy, Xy) {
        let i = self.seg_start(s);
        (self.points[i], self.points[i + 1])
    }

    fn build_levels(&mut self) {
        let segments = self.seg_ring.len();
        let leaves: Vec<Bbox> = (0..segments.div_ceil(FANOUT))
            .map(|leaf| {
                (leaf * FANOUT..((leaf + 1) * FANOUT).min(segments))
                    .map(|s| {
                        let (p, q) = self.segment(s);
                        bbox_of(p, q)
                    })
                    .fold(
                        [
                            f64::INFINITY,
                            f64::INFINITY,
                            f64::NEG_INFINITY,
                            f64::NEG_INFINITY,
                        ],
                        union,
                    )
            })
            .collect();
        self.levels.push(leaves);
        while self.levels.last().is_some_and(|level| level.len() > 1) {
            let next = self.levels[self.levels.len() - 1]
                .chunks(FANOUT)
                .map(|chunk| chunk.iter().copied().fold(chunk[0], union))
                .collect();
            self.levels.push(next);
        }
    }

    /// Segments covered by node `index` of `level`.
    fn node_segments(level: usize, index: usize) -> Range<usize> {
        let span = FANOUT.pow(level as u32 + 1);
        index * span..(index + 1) * span
    }

    fn spend(&mut self, amount: u64) -> Check {
        self.work += amount;
        if self.work > self.budget || self.stop.requested() {
            Err(Outcome::OverBudget)
        } else {
            Ok(())
        }
    }

    fn check(mut self) -> Check {
        if self.seg_ring.is_empty() {
            return Ok(());
        }
        self.find_intersections()?;
        self.touches.sort_by_key(|t| (t.0, t.1, point_key(t.2)));
        self.touches
            .dedup_by(|a, b| a.0 == b.0 && a.1 == b.1 && point_key(a.2) == point_key(b.2));
        self.check_holes()?;
        self.check_shells_not_nested()?;
        self.check_connected()
    }

    /// Rule 2: compares every pair of segments whose boxes overlap.
    fn find_intersections(&mut self) -> Check {
        let top = self.levels.len() - 1;
        let leaf_count = self.levels[0].len();
        let mut stack: Vec<(usize, usize)> = Vec::new();
        for leaf in 0..leaf_count {
            let leaf_box = self.levels[0][leaf];
            stack.push((top, 0));
            let mut visited = 0u64;
            while let Some((level, index)) = stack.pop() {
                visited += 1;
                let leaves_per_node = FANOUT.pow(level as u32);
                if (index + 1) * leaves_per_node <= leaf {
                    continue;
                }
                if !overlaps(&self.levels[level][index], &leaf_box) {
                    continue;
                }
                if level == 0 {
                    self.compare_leaves(leaf, index)?;
                } else {
                    let children =
                        index * FANOUT..((index + 1) * FANOUT).min(self.levels[level - 1].len());
                    stack.extend(children.map(|child| (level - 1, child)));
                }
            }
            self.spend(visited)?;
        }
        Ok(())
    }

    fn compare_leaves(&mut self, a: usize, b: usize) -> Check {
        let count = self.seg_ring.len();
        let a_segs = a * FANOUT..((a + 1) * FANOUT).min(count);
        let b_end = ((b + 1) * FANOUT).min(count);
        let mut compared = 0u64;
        // The boxes of leaf b's segments, once for the whole leaf pair rather than once per
        // pair of segments (on the stack: a per-segment array would add 32 bytes a segment
        // to the peak memory of the largest features).
        let b_first = b * FANOUT;
        let mut b_boxes = [[0.0; 4]; FANOUT];
        for (t, slot) in (b_first..b_end).zip(&mut b_boxes) {
            let (q1, q2) = self.segment(t);
            *slot = bbox_of(q1, q2);
        }
        for s in a_segs {
            let (p1, p2) = self.segment(s);
            let s_box = bbox_of(p1, p2);
            let b_start = if a == b { s + 1 } else { b_first };
            for t in b_start..b_end {
                compared += 1;
                if !overlaps(&s_box, &b_boxes[t - b_first]) {
                    continue;
                }
                let (q1, q2) = self.segment(t);
                match intersect(p1, p2, q1, q2) {
                    Hit::None => {}
                    Hit::Cross(at) | Hit::Overlap(at) => {
                        return Err(invalid(SELF_INTERSECTION, Some(at)));
                    }
                    Hit::Touch(at) => self.classify_touch(s, t, at)?,
                }
            }
        }
        self.spend(compared)
    }

    /// A touch at a single point: fine between consecutive segments at their shared vertex
    /// and between rings (recorded for the connectivity rule), invalid anywhere else on one
    /// ring.
    fn classify_touch(&mut self, s: usize, t: usize, at: Xy) -> Check {
        let (ring_s, ring_t) = (self.ring_of(s), self.ring_of(t));
        if ring_s != ring_t {
            self.touches.push((ring_s, ring_t, at));
            self.touches.push((ring_t, ring_s, at));
            return Ok(());
        }
        let segs = &self.ring_segs[ring_s];
        let shared = if t == s + 1 {
            Some(self.points[self.seg_start(t)])
        } else if s == segs.start && t == segs.end - 1 {
            Some(self.points[self.seg_start(s)])
        } else {
            None
        };
        if shared == Some(at) {
            Ok(())
        } else {
            Err(invalid(RING_SELF_INTERSECTION, Some(at)))
        }
    }

    /// A position of `ring` that touches no other ring: its relation to any other ring is
    /// then strictly inside or outside.
    fn free_vertex(&mut self, ring: usize) -> Result<Option<Xy>, Outcome> {
        let segs = self.ring_segs[ring].clone();
        let first = self.seg_start(segs.start);
        let last = self.seg_start(segs.end - 1) + 1;
        let from = self.touches.partition_point(|t| t.0 < ring);
        let to = self.touches.partition_point(|t| t.0 <= ring);
        // Charged like every other step: a ring touched at each of its vertices (a hole
        // touched all round by tiny holes) is a linear scan here, never a quadratic one.
        self.spend((last - first + (to - from)) as u64)?;
        let touched: HashSet<(u64, u64)> = self.touches[from..to]
            .iter()
            .map(|t| point_key(t.2))
            .collect();
        Ok(self.points[first..last]
            .iter()
            .copied()
            .find(|&p| !touched.contains(&point_key(p))))
    }

    /// Whether `p`, which is not on `ring`, lies inside it (even-odd rule, with a ray
    /// towards +x answered through the box hierarchy).
    fn inside(&mut self, ring: usize, p: Xy) -> Result<bool, Outcome> {
        let segs = self.ring_segs[ring].clone();
        let top = self.levels.len() - 1;
        let mut stack = vec![(top + 1, 0usize)];
        let mut crossings = 0u32;
        let mut visited = 0u64;
        while let Some((level, index)) = stack.pop() {
            visited += 1;
            if level == 0 {
                let (a, b) = self.segment(index);
                if (a[1] > p[1]) != (b[1] > p[1]) {
                    let x = a[0] + (p[1] - a[1]) / (b[1] - a[1]) * (b[0] - a[0]);
                    if x > p[0] {
                        crossings += 1;
                    }
                }
                continue;
            }
            let node_level = level - 1;
            let covered = Self::node_segments(node_level, index);
            if covered.end <= segs.start || covered.start >= segs.end {
                continue;
            }
            let node = self.levels[node_level][index];
            if node[1] > p[1] || node[3] < p[1] || node[2] < p[0] {
                continue;
            }
            if node_level == 0 {
                let range = covered.start.max(segs.start)..covered.end.min(segs.end);
                stack.extend(range.map(|s| (0, s)));
            } else {
                let children =
                    index * FANOUT..((index + 1) * FANOUT).min(self.levels[node_level - 1].len());
                stack.extend(children.map(|child| (node_level, child)));
            }
        }
        self.spend(visited)?;
        Ok(crossings % 2 == 1)
    }

    /// Rule 3 within each polygon: holes inside the shell, and not inside each other.
    fn check_holes(&mut self) -> Check {
        for part in 0..self.part_rings.len() {
            let rings = self.part_rings[part].clone();
            if rings.len() < 2 {
                continue;
            }
            let shell = rings.start;
            for hole in rings.start + 1..rings.end {
                if let Some(p) = self.free_vertex(hole)?
                    && !self.inside(shell, p)?
                {
                    return Err(invalid(HOLE_OUTSIDE_SHELL, Some(p)));
                }
            }
            for inner in rings.start + 1..rings.end {
                for outer in rings.start + 1..rings.end {
                    self.spend(1)?;
                    if inner == outer || !contains(&self.ring_bbox[outer], &self.ring_bbox[inner]) {
                        continue;
                    }
                    if let Some(p) = self.free_vertex(inner)?
                        && self.inside(outer, p)?
                    {
                        return Err(invalid(NESTED_HOLES, Some(p)));
                    }
                }
            }
        }
        Ok(())
    }

    /// Rule 3 across a multipolygon: no shell inside another polygon's interior.
    fn check_shells_not_nested(&mut self) -> Check {
        let parts = self.part_rings.len();
        if parts < 2 {
            return Ok(());
        }
        let mut order: Vec<usize> = (0..parts).collect();
        order.sort_by(|&a, &b| {
            let (a, b) = (
                self.ring_bbox[self.part_rings[a].start],
                self.ring_bbox[self.part_rings[b].start],
            );
            a[0].total_cmp(&b[0])
        });
        for (position, &inner) in order.iter().enumerate() {
            let inner_shell = self.part_rings[inner].start;
            let inner_box = self.ring_bbox[inner_shell];
            // Candidates start no further right than `inner` does.
            let end = order[position..]
                .iter()
                .position(|&q| self.ring_bbox[self.part_rings[q].start][0] > inner_box[0])
                .map_or(parts, |offset| position + offset);
            for &outer in &order[..end] {
                self.spend(1)?;
                let outer_rings = self.part_rings[outer].clone();
                if outer == inner || !contains(&self.ring_bbox[outer_rings.start], &inner_box) {
                    continue;
                }
                let Some(p) = self.free_vertex(inner_shell)? else {
                    continue;
                };
                if !self.inside(outer_rings.start, p)? {
                    continue;
                }
                let mut in_hole = false;
                for hole in outer_rings.start + 1..outer_rings.end {
                    let b = self.ring_bbox[hole];
                    if b[0] <= p[0]
                        && p[0] <= b[2]
                        && b[1] <= p[1]
                        && p[1] <= b[3]
                        && self.inside(hole, p)?
                    {
                        in_hole = true;
                        break;
                    }
                }
                if !in_hole {
                    return Err(invalid(NESTED_SHELLS, Some(p)));
                }
            }
        }
        Ok(())
    }

    /// Rule 4: in the graph linking each ring to the points where it touches another ring
    /// of its polygon, a cycle cuts the interior in two.
    fn check_connected(&self) -> Check {
        let mut edges: Vec<((u64, u64), usize)> = self
            .touches
            .iter()
            .filter(|t| self.ring_part[t.0] == self.ring_part[t.1])
            .map(|t| (point_key(t.2), t.0))
            .collect();
        edges.sort_unstable();
        edges.dedup();
        let rings = self.ring_segs.len();
        let mut sets = DisjointSets::new(rings + edges.len());
        let mut point_node = rings;
        for (index, &(key, ring)) in edges.iter().enumerate() {
            if index > 0 && edges[index - 1].0 != key {
                point_node += 1;
            }
            if !sets.union(ring, point_node) {
                let at = [f64::from_bits(key.0), f64::from_bits(key.1)];
                return Err(invalid(DISCONNECTED_INTERIOR, Some(at)));
            }
        }
        Ok(())
    }
}

/// A point's identity for comparisons, with -0.0 and 0.0 the same.
fn point_key(p: Xy) -> (u64, u64) {
    ((p[0] + 0.0).to_bits(), (p[1] + 0.0).to_bits())
}

struct DisjointSets {
    parent: Vec<usize>,
}

impl DisjointSets {
    fn new(size: usize) -> Self {
        DisjointSets {
            parent: (0..size).collect(),
        }
    }

    fn find(&mut self, mut node: usize) -> usize {
        while self.parent[node] != node {
            self.parent[node] = self.parent[self.parent[node]];
            node = self.parent[node];
        }
        node
    }

    /// Joins the sets of `a` and `b`; `false` if they were already one set.
    fn union(&mut self, a: usize, b: usize) -> bool {
        let (a, b) = (self.find(a), self.find(b));
        if a == b {
            return false;
        }
        self.parent[a] = b;
        true
    }
}

/// How two segments meet.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Hit {
    None,
    /// They meet at exactly one point, an endpoint of at least one of them.
    Touch(Xy),
    /// They cross at a point interior to both.
    Cross(Xy),
    /// They are collinear and share more than a point.
    Overlap(Xy),
}

/// Twice the signed area of triangle `a b c`: positive when `c` is left of `a -> b`.
fn orient(a: Xy, b: Xy, c: Xy) -> f64 {
    (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])
}

fn intersect(p1: Xy, p2: Xy, q1: Xy, q2: Xy) -> Hit {
    let d1 = orient(q1, q2, p1);
    let d2 = orient(q1, q2, p2);
    let d3 = orient(p1, p2, q1);
    let d4 = orient(p1, p2, q2);
    let same_side = |a: f64, b: f64| (a > 0.0 && b > 0.0) || (a < 0.0 && b < 0.0);
    if same_side(d1, d2) || same_side(d3, d4) {
        return Hit::None;
    }
    if d1 == 0.0 && d2 == 0.0 && d3 == 0.0 && d4 == 0.0 {
        return collinear(p1, p2, q1, q2);
    }
    if d1 != 0.0 && d2 != 0.0 && d3 != 0.0 && d4 != 0.0 {
        let t = d1 / (d1 - d2);
        return Hit::Cross([p1[0] + t * (p2[0] - p1[0]), p1[1] + t * (p2[1] - p1[1])]);
    }
    Hit::Touch(if d1 == 0.0 {
        p1
    } else if d2 == 0.0 {
        p2
    } else if d3 == 0.0 {
        q1
    } else {
        q2
    })
}

fn collinear(p1: Xy, p2: Xy, q1: Xy, q2: Xy) -> Hit {
    let axis = usize::from(
        (p2[0] - p1[0]).abs() + (q2[0] - q1[0]).abs()
            < (p2[1] - p1[1]).abs() + (q2[1] - q1[1]).abs(),
    );
    let (p_lo, p_hi) = if p1[axis] <= p2[axis] {
        (p1, p2)
    } else {
        (p2, p1)
    };
    let (q_lo, q_hi) = if q1[axis] <= q2[axis] {
        (q1, q2)
    } else {
        (q2, q1)
    };
    let lo = if p_lo[axis] >= q_lo[axis] { p_lo } else { q_lo };
    let hi = if p_hi[axis] <= q_hi[axis] { p_hi } else { q_hi };
    if lo[axis] > hi[axis] {
        Hit::None
    } else if lo[axis] == hi[axis] {
        Hit::Touch(lo)
    } else {
        Hit::Overlap(lo)
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::feature::{Shape, parse};

    fn validity(geometry: &str) -> Validity {
        let parsed =
            parse(geometry.as_bytes(), 0, Shape::Geometry, 0).expect("test geometry parses");
        check(&parsed.geometry.expect("not null"), &Stop::new())
    }

    fn reason(geometry: &str) -> Option<&'static str> {
        match validity(geometry) {
            Validity::Valid => None,
            Validity::Invalid(found) => Some(found.reason),
            Validity::Unchecked => Some("unchecked"),
        }
    }

    const SQUARE: &str = "[[0,0],[10,0],[10,10],[0,10],[0,0]]";

    fn polygon(rings: &[&str]) -> String {
        format!(
            r#"{{"type":"Polygon","coordinates":[{}]}}"#,
            rings.join(",")
        )
    }

    fn multipolygon(polygons: &[&[&str]]) -> String {
        let parts: Vec<String> = polygons
            .iter()
            .map(|rings| format!("[{}]", rings.join(",")))
            .collect();
        format!(
            r#"{{"type":"MultiPolygon","coordinates":[{}]}}"#,
            parts.join(",")
        )
    }

    #[test]
    fn polygon_rules_agree_with_geos() {
        let cases: Vec<(&str, String, Option<&str>)> = vec![
            ("square", polygon(&[SQUARE]), None),
            (
                "clockwise square",
                polygon(&["[[0,0],[0,10],[10,10],[10,0],[0,0]]"]),
                None,
            ),
            (
                "repeated positions",
                polygon(&["[[0,0],[10,0],[10,0],[10,10],[0,10],[0,0],[0,0]]"]),
                None,
            ),
            (
                "collinear vertex",
                polygon(&["[[0,0],[5,0],[10,0],[10,10],[0,10],[0,0]]"]),
                None,
            ),
            (
                "bow tie",
                polygon(&["[[0,0],[10,10],[10,0],[0,10],[0,0]]"]),
                Some(SELF_INTERSECTION),
            ),
            (
                "spike",
                polygon(&["[[0,0],[10,0],[10,10],[10,5],[10,12],[0,10],[0,0]]"]),
                Some(SELF_INTERSECTION),
            ),
            (
                "not closed",
                polygon(&["[[0,0],[10,0],[10,10],[0,10]]"]),
                Some(NOT_CLOSED),
            ),
            (
                "three positions",
                polygon(&["[[0,0],[10,0],[0,0]]"]),
                Some(TOO_FEW_POINTS),
            ),
            (
                "four with a repeat",
                polygon(&["[[0,0],[10,0],[10,0],[0,0]]"]),
                Some(TOO_FEW_POINTS),
            ),
            (
                "flat ring",
                polygon(&["[[0,0],[5,0],[10,0],[0,0]]"]),
                Some(SELF_INTERSECTION),
            ),
            (
                "ring touching itself at a vertex",
                polygon(&["[[0,0],[10,0],[5,5],[10,10],[0,10],[5,5],[0,0]]"]),
                Some(RING_SELF_INTERSECTION),
            ),
            (
                "ring touching itself on an edge",
                polygon(&["[[0,0],[10,0],[10,10],[5,0.000],[0,10],[0,0]]"]),
                Some(RING_SELF_INTERSECTION),
            ),
            (
                "hole inside",
                polygon(&[SQUARE, "[[2,2],[4,2],[4,4],[2,4],[2,2]]"]),
                None,
            ),
            (
                "hole outside",
                polygon(&[SQUARE, "[[20,2],[24,2],[24,4],[20,4],[20,2]]"]),
                Some(HOLE_OUTSIDE_SHELL),
            ),
            (
                "hole crossing shell",
                polygon(&[SQUARE, "[[8,2],[14,2],[14,4],[8,4],[8,2]]"]),
                Some(SELF_INTERSECTION),
            ),
            (
                "hole sharing an edge",
                polygon(&[SQUARE, "[[0,2],[4,2],[4,4],[0,4],[0,2]]"]),
                Some(SELF_INTERSECTION),
            ),
            (
                "hole touching shell once",
                polygon(&[SQUARE, "[[0,5],[4,2],[4,8],[0,5]]"]),
                None,
            ),
            (
                "hole touching shell twice",
                polygon(&[SQUARE, "[[0,5],[5,0],[6,6],[0,5]]"]),
                Some(DISCONNECTED_INTERIOR),
            ),
            (
                "nested holes",
                polygon(&[
                    SQUARE,
                    "[[1,1],[9,1],[9,9],[1,9],[1,1]]",
                    "[[2,2],[4,2],[4,4],[2,4],[2,2]]",
                ]),
                Some(NESTED_HOLES),
            ),
            (
                "two holes touching once",
                polygon(&[
                    SQUARE,
                    "[[2,2],[4,2],[4,4],[2,2]]",
                    "[[4,4],[6,4],[6,6],[4,4]]",
                ]),
                None,
            ),
            (
                "holes closing a cycle with the shell",
                polygon(&[
                    SQUARE,
                    "[[0,5],[5,2],[5,5],[0,5]]",
                    "[[5,5],[10,5],[5,8],[5,5]]",
                    "[[5,2],[10,5],[7,3],[5,2]]",
                ]),
                Some(DISCONNECTED_INTERIOR),
            ),
            (
                "empty polygon",
                r#"{"type":"Polygon","coordinates":[]}"#.to_owned(),
                None,
            ),
            (
                "infinite coordinate",
                polygon(&["[[0,0],[1e400,0],[10,10],[0,0]]"]),
                Some(INVALID_COORDINATE),
            ),
        ];
        for (name, geometry, expected) in cases {
            assert_eq!(reason(&geometry), expected, "{name}: {geometry}");
        }
    }

    #[test]
    fn multipolygon_rules_agree_with_geos() {
        let far = "[[20,0],[30,0],[30,10],[20,10],[20,0]]";
        let cases: Vec<(&str, String, Option<&str>)> = vec![
            ("disjoint", multipolygon(&[&[SQUARE], &[far]]), None),
            (
                "touching at a corner",
                multipolygon(&[&[SQUARE], &["[[10,10],[20,10],[20,20],[10,20],[10,10]]"]]),
                None,
            ),
            (
                "sharing an edge",
                multipolygon(&[&[SQUARE], &["[[10,0],[20,0],[20,10],[10,10],[10,0]]"]]),
                Some(SELF_INTERSECTION),
            ),
            (
                "overlapping",
                multipolygon(&[&[SQUARE], &["[[5,5],[15,5],[15,15],[5,15],[5,5]]"]]),
                Some(SELF_INTERSECTION),
            ),
            (
                "nested shells",
                multipolygon(&[&[SQUARE], &["[[2,2],[4,2],[4,4],[2,4],[2,2]]"]]),
                Some(NESTED_SHELLS),
            ),
            (
                "island in a lake",
                multipolygon(&[
                    &[SQUARE, "[[1,1],[9,1],[9,9],[1,9],[1,1]]"],
                    &["[[2,2],[4,2],[4,4],[2,4],[2,2]]"],
                ]),
                None,
            ),
            (
                "duplicate polygons",
                multipolygon(&[&[SQUARE], &[SQUARE]]),
                Some(SELF_INTERSECTION),
            ),
        ];
        for (name, geometry, expected) in cases {
            assert_eq!(reason(&geometry), expected, "{name}: {geometry}");
        }
    }

    #[test]
    fn lines_points_and_collections() {
        let cases = [
            (
                r#"{"type":"LineString","coordinates":[[0,0],[1,1],[0,1],[1,0]]}"#,
                None,
            ),
            (
                r#"{"type":"LineString","coordinates":[[0,0],[0,0]]}"#,
                Some(TOO_FEW_POINTS),
            ),
            (r#"{"type":"MultiPoint","coordinates":[[0,0],[0,0]]}"#, None),
            (
                r#"{"type":"Point","coordinates":[1e999,0]}"#,
                Some(INVALID_COORDINATE),
            ),
            (
                r#"{"type":"GeometryCollection","geometries":[{"type":"Point","coordinates":[0,0]},{"type":"Polygon","coordinates":[[[0,0],[10,10],[10,0],[0,10],[0,0]]]}]}"#,
                Some(SELF_INTERSECTION),
            ),
        ];
        for (geometry, expected) in cases {
            assert_eq!(reason(geometry), expected, "{geometry}");
        }
    }

    #[test]
    fn large_rings_use_the_hierarchy_correctly() {
        // A 20 000-vertex circle with a crossing planted near the end: found through the
        // box hierarchy, not by luck of leaf order.
        let n = 20_000;
        let mut ring: Vec<String> = (0..n)
            .map(|i| {
                let a = std::f64::consts::TAU * i as f64 / n as f64;
                format!("[{},{}]", 10.0 * a.cos(), 10.0 * a.sin())
            })
            .collect();
        ring.push(ring[0].clone());
        let closed = format!("[{}]", ring.join(","));
        assert_eq!(reason(&polygon(&[&closed])), None);
        ring.insert(n - 5, "[0,0]".to_owned());
        ring.insert(n - 5, "[-10, 0.5]".to_owned());
        let crossed = format!("[{}]", ring.join(","));
        assert_eq!(reason(&polygon(&[&crossed])), Some(SELF_INTERSECTION));
    }
}
