"""Build, push and deploy the invoice processor: ``python -m deploy build|push|plan|deploy``.

The image is built with Docker, pushed to ECR tagged with the git commit, and rolled out with
``terraform apply`` of ``terraform/envs/prod`` pinned to the pushed image's digest (a tag can be
re-pointed, a digest cannot, so the schedules run exactly the code that was tested).
"""

from __future__ import annotations


class DeployError(Exception):
    """A deploy step failed; the message says which step and what to do about it."""


class DeployConfigError(DeployError):
    """The deploy configuration is incomplete; ``problems`` names every problem at once."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__(
            "deploy configuration is incomplete:\n" + "\n".join(f"  - {p}" for p in self.problems)
        )
