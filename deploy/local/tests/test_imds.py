"""The instance metadata stand-in speaks the IMDSv2 protocol the worker's watcher uses."""

import json
import tempfile
import unittest
import urllib.error
import urllib.request
from pathlib import Path

from geobatch_local.imds import ImdsStandIn, interruption_releases


def call(url, method="GET", headers=None):
    request = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, ""


class ImdsStandInTest(unittest.TestCase):
    def setUp(self):
        self.imds = ImdsStandIn()
        self.imds.start()
        self.addCleanup(self.imds.shutdown)

    def token(self, instance):
        status, token = call(f"{self.imds.endpoint(instance)}/latest/api/token", "PUT", {"X-aws-ec2-metadata-token-ttl-seconds": "21600"})
        self.assertEqual(status, 200)
        return token

    def test_a_notice_needs_a_token_and_reaches_only_its_instance(self):
        action = "/latest/meta-data/spot/instance-action"
        self.assertEqual(call(f"{self.imds.endpoint('i-1')}{action}")[0], 401)
        self.assertEqual(call(f"{self.imds.endpoint('i-1')}/latest/api/token", "PUT")[0], 400, "no TTL header")
        token = {"X-aws-ec2-metadata-token": self.token("i-1")}
        self.assertEqual(call(f"{self.imds.endpoint('i-1')}{action}", headers=token)[0], 404)
        self.imds.interrupt("i-1", notice_secs=120)
        status, body = call(f"{self.imds.endpoint('i-1')}{action}", headers=token)
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(body)["action"], "terminate")
        self.assertRegex(json.loads(body)["time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
        self.assertEqual(call(f"{self.imds.endpoint('i-2')}{action}", headers=token)[0], 404, "another instance")
        rebalance = "/latest/meta-data/events/recommendations/rebalance"
        self.assertEqual(call(f"{self.imds.endpoint('i-2')}{rebalance}", headers=token)[0], 404)
        self.imds.recommend_rebalance("i-2")
        status, body = call(f"{self.imds.endpoint('i-2')}{rebalance}", headers=token)
        self.assertEqual((status, sorted(json.loads(body))), (200, ["noticeTime"]))

    def test_releases_are_read_from_the_workers_json_logs(self):
        with tempfile.TemporaryDirectory() as tmp:
            lines = [
                {"timestamp": "2026-12-04T03:00:01.123456789Z", "message": "message released to the queue", "reason": "interruption", "message_id": "m1"},
                {"timestamp": "2026-12-04T03:00:02Z", "message": "message released to the queue", "reason": "shutdown", "message_id": "m2"},
                {"timestamp": "2026-12-04T03:00:00.5Z", "message": "file processed", "message_id": "m3"},
                {"timestamp": "2026-12-04T03:00:03Z", "message": "message handed back to the queue as a fresh copy", "reason": "interruption", "message_id": "m4"},
            ]
            Path(tmp, "task-t1.log").write_text("not json\n" + "".join(json.dumps(line) + "\n" for line in lines))
            releases = interruption_releases(Path(tmp), ["t1", "t-missing"])
        self.assertEqual([m for _, m in releases], ["m1", "m4"])
        self.assertAlmostEqual(releases[0][0] % 60, 1.123456, places=5)


if __name__ == "__main__":
    unittest.main()
