"""Run a moto server for the Terraform checks in its own process.

``python tests/infra/moto_launcher.py PORT`` serves moto on 127.0.0.1:PORT until terminated.
A process of its own because moto's backends are global to a process: a server thread inside
the pytest worker would share state with every ``mock_aws`` test and sandbox that worker runs.

Two adjustments the root stack needs, made here and nowhere else:
* MOTO_IAM_LOAD_MANAGED_POLICIES=true, so AmazonECSTaskExecutionRolePolicy can be attached;
* a PutCompositeAlarm route: moto's backend already stores composite alarms (PutMetricAlarm with
  an AlarmRule, returned under CompositeAlarms by DescribeAlarms) but does not route the action.
"""

from __future__ import annotations

import os
import sys


def main(port: int) -> None:
    os.environ["MOTO_IAM_LOAD_MANAGED_POLICIES"] = "true"
    from moto.cloudwatch.responses import CloudWatchResponse
    from moto.server import main as serve

    if not hasattr(CloudWatchResponse, "put_composite_alarm"):
        CloudWatchResponse.put_composite_alarm = CloudWatchResponse.put_metric_alarm  # type: ignore[attr-defined]
    serve(["--host", "127.0.0.1", "--port", str(port)])


if __name__ == "__main__":
    main(int(sys.argv[1]))
