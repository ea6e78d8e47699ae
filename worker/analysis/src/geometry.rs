//! The parsed form of one GeoJSON geometry: flat coordinate arrays, no per-position objects.

/// The seven GeoJSON geometry types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum GeometryType {
    Point,
    MultiPoint,
    LineString,
    MultiLineString,
    Polygon,
    MultiPolygon,
    GeometryCollection,
}

impl GeometryType {
    pub(crate) const ALL: [GeometryType; 7] = [
        GeometryType::Point,
        GeometryType::MultiPoint,
        GeometryType::LineString,
        GeometryType::MultiLineString,
        GeometryType::Polygon,
        GeometryType::MultiPolygon,
        GeometryType::GeometryCollection,
    ];

    pub(crate) fn from_name(name: &str) -> Option<GeometryType> {
        GeometryType::ALL.into_iter().find(|t| t.name() == name)
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            GeometryType::Point => "Point",
            GeometryType::MultiPoint => "MultiPoint",
            GeometryType::LineString => "LineString",
            GeometryType::MultiLineString => "MultiLineString",
            GeometryType::Polygon => "Polygon",
            GeometryType::MultiPolygon => "MultiPolygon",
            GeometryType::GeometryCollection => "GeometryCollection",
        }
    }
}

/// A point as `[longitude, latitude]`; further ordinates (height, measure) are dropped.
pub(crate) type Xy = [f64; 2];

/// One geometry with its positions flattened.
///
/// `points` holds every position in file order. `line_ends` splits them into lines or rings
/// (end index into `points`, exclusive); `part_ends` groups rings into polygons (end index
/// into `line_ends`). A Point or MultiPoint uses neither, a LineString has one line, a
/// Polygon one part.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Geometry {
    pub(crate) kind: GeometryType,
    pub(crate) points: Vec<Xy>,
    pub(crate) line_ends: Vec<usize>,
    pub(crate) part_ends: Vec<usize>,
    /// Members of a GeometryCollection.
    pub(crate) members: Vec<Geometry>,
}

impl Geometry {
    pub(crate) fn new(kind: GeometryType) -> Self {
        Geometry {
            kind,
            points: Vec::new(),
            line_ends: Vec::new(),
            part_ends: Vec::new(),
            members: Vec::new(),
        }
    }

    /// The positions of line or ring `index`.
    pub(crate) fn line(&self, index: usize) -> &[Xy] {
        let start = if index == 0 {
            0
        } else {
            self.line_ends[index - 1]
        };
        &self.points[start..self.line_ends[index]]
    }

    /// Line or ring indices of polygon `index`.
    pub(crate) fn part(&self, index: usize) -> std::ops::Range<usize> {
        let start = if index == 0 {
            0
        } else {
            self.part_ends[index - 1]
        };
        start..self.part_ends[index]
    }

    /// Every position, members of a collection included.
    pub(crate) fn vertex_count(&self) -> u64 {
        self.points.len() as u64 + self.members.iter().map(Geometry::vertex_count).sum::<u64>()
    }
}
