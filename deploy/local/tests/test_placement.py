"""The ECS agent stand-in's decisions, one guarantee per test."""

import unittest

from geobatch_local.placement import InstanceView, TaskView, plan


def instances(*ids, draining=()):
    return [InstanceView(i, draining=i in draining) for i in ids]


class PlacementTest(unittest.TestCase):
    def test_starts_tasks_up_to_the_desired_count_binpacked(self):
        result = plan(3, instances("i-a", "i-b"), [], tasks_per_instance=2)
        self.assertEqual(result.start_on, ["i-a", "i-a", "i-b"])
        self.assertEqual(result.stop, [])

    def test_never_exceeds_the_capacity_of_the_instances(self):
        result = plan(10, instances("i-a"), [TaskView("t1", "i-a")], tasks_per_instance=2)
        self.assertEqual(result.start_on, ["i-a"])

    def test_no_capacity_means_no_start(self):
        self.assertEqual(plan(4, [], [], tasks_per_instance=2).start_on, [])

    def test_scale_in_stops_only_unprotected_tasks(self):
        tasks = [TaskView("t1", "i-a", protected=True), TaskView("t2", "i-a", protected=True), TaskView("t3", "i-b")]
        result = plan(0, instances("i-a", "i-b"), tasks, tasks_per_instance=2)
        self.assertEqual(result.stop, ["t3"])
        self.assertEqual(result.start_on, [])

    def test_scale_in_empties_the_least_loaded_instance_first(self):
        tasks = [TaskView("t1", "i-a"), TaskView("t2", "i-a"), TaskView("t3", "i-b")]
        result = plan(2, instances("i-a", "i-b"), tasks, tasks_per_instance=2)
        self.assertEqual(result.stop, ["t3"])

    def test_all_protected_means_scale_in_waits(self):
        tasks = [TaskView("t1", "i-a", protected=True)]
        self.assertEqual(plan(0, instances("i-a"), tasks, tasks_per_instance=2).stop, [])

    def test_draining_instance_gets_no_new_task_and_loses_unprotected_ones(self):
        tasks = [TaskView("t1", "i-a"), TaskView("t2", "i-a", protected=True)]
        result = plan(2, instances("i-a", "i-b", draining=("i-a",)), tasks, tasks_per_instance=2)
        self.assertEqual(result.stop, ["t1"])
        self.assertEqual(result.start_on, ["i-b"])

    def test_a_stopping_task_holds_its_slot_until_it_exits(self):
        tasks = [TaskView("t1", "i-a", stopping=True), TaskView("t2", "i-a")]
        result = plan(2, instances("i-a"), tasks, tasks_per_instance=2)
        self.assertEqual(result.start_on, [])
        self.assertEqual(result.stop, [])

    def test_replaces_a_task_that_exited(self):
        result = plan(2, instances("i-a"), [TaskView("t2", "i-a")], tasks_per_instance=2)
        self.assertEqual(result.start_on, ["i-a"])

    def test_steady_state_changes_nothing(self):
        tasks = [TaskView("t1", "i-a"), TaskView("t2", "i-b", protected=True)]
        result = plan(2, instances("i-a", "i-b"), tasks, tasks_per_instance=2)
        self.assertEqual((result.stop, result.start_on), ([], []))

    def test_tasks_on_vanished_instances_are_not_counted(self):
        result = plan(1, instances("i-b"), [TaskView("t1", "i-gone")], tasks_per_instance=1)
        self.assertEqual(result.start_on, ["i-b"])


if __name__ == "__main__":
    unittest.main()
