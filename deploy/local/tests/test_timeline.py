"""The timeline's table and plot are derived from the samples alone."""

import unittest
import xml.etree.ElementTree as ET

from geobatch_local.timeline import Sample, render_svg, table


def sample(secs, visible=0, in_flight=0, tasks=0, running=0, protected=0, wanted=0, instances=0):
    return Sample(secs, visible, in_flight, tasks, running, protected, wanted, instances)


class TimelineTest(unittest.TestCase):
    def test_table_has_one_row_per_change(self):
        samples = [sample(0), sample(1), sample(2, visible=5, tasks=2, wanted=1), sample(3, visible=5, tasks=2, wanted=1), sample(4)]
        lines = table(samples).splitlines()
        self.assertEqual(len(lines), 1 + 3)
        self.assertEqual(lines[2].split(), ["2", "5", "0", "2", "0", "0", "1", "0"])

    def test_svg_is_well_formed_and_has_a_line_per_series(self):
        samples = [sample(0), sample(1, visible=3, tasks=1, running=1, wanted=1, instances=1), sample(2)]
        root = ET.fromstring(render_svg(samples, "demo & test"))
        polylines = root.findall("{http://www.w3.org/2000/svg}polyline")
        self.assertEqual(len(polylines), 7)
        # A step plot: each point after the first adds a horizontal and a vertical segment.
        self.assertEqual(len(polylines[0].get("points").split()), 5)

    def test_svg_without_samples_still_renders(self):
        ET.fromstring(render_svg([], "empty"))


if __name__ == "__main__":
    unittest.main()
