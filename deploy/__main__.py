"""``python -m deploy build|push|plan|deploy`` (what ``make build/push/plan/deploy`` run).

Settings come from the environment: AWS_REGION, ECR_REPOSITORY (default qbo-invoice-processor),
IMAGE_PLATFORM (linux/amd64 | linux/arm64, as the task definition), TF_BACKEND_BUCKET,
TF_BACKEND_KEY, TF_BACKEND_REGION (default AWS_REGION), TF_VAR_FILE (the prod tfvars) and
DEPLOY_AUTO_APPROVE=1 to apply without a prompt (required when stdin is not a terminal).
AWS credentials are boto3's and Terraform's usual ones (profile, env or SSO).

Exit codes: 0 done, 1 a step failed, 2 configuration incomplete.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from loguru import logger

from deploy import DeployConfigError, DeployError
from deploy.config import COMMANDS, DeployConfig, load_config
from deploy.image import SubprocessRunner
from deploy.terraform import PlanResult, TerraformStack

REPO_ROOT = Path(__file__).resolve().parent.parent


def _approver(config: DeployConfig, yes: bool) -> Callable[[PlanResult], bool]:
    def approve(result: PlanResult) -> bool:
        print(result.output, file=sys.stderr)
        if yes or config.auto_approve:
            return True
        if not sys.stdin.isatty():
            logger.error("stdin is not a terminal: set DEPLOY_AUTO_APPROVE=1 (or --yes) to apply unattended")
            return False
        return input("Apply this plan? Only 'yes' applies: ").strip() == "yes"

    return approve


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=COMMANDS)
    parser.add_argument("--allow-dirty", action="store_true", help="build even with uncommitted changes")
    parser.add_argument("--yes", action="store_true", help="deploy: apply without asking")
    args = parser.parse_args(argv)
    logger.remove()
    logger.add(
        sys.stderr, level=os.environ.get("DEPLOY_LOG_LEVEL", "INFO"), format="{time:HH:mm:ss} {message}"
    )

    # Imported here so `--help` and config errors need neither boto3 nor AWS credentials.
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    from deploy import pipeline

    try:
        config = load_config(os.environ, REPO_ROOT, args.command)
        runner = SubprocessRunner()
        if args.command == "build":
            local = pipeline.build(config, runner, allow_dirty=args.allow_dirty)
            logger.info("built {image}", image=local)
            return 0
        ecr = boto3.session.Session(region_name=config.aws_region).client("ecr")
        if args.command == "push":
            pushed = pipeline.push(config, runner, ecr, allow_dirty=args.allow_dirty)
            logger.info("pushed {image}", image=pushed.ref)
            return 0
        var_files = [config.var_file] if config.var_file else []
        stack = TerraformStack(config.terraform_dir, var_files=var_files)
        if args.command == "plan":
            result = pipeline.plan(config, runner, ecr, stack, allow_dirty=args.allow_dirty)
            print(result.output)
            logger.info("plan: {what}", what="changes pending" if result.changes else "no changes")
            return 0
        outcome = pipeline.deploy(
            config, runner, ecr, stack, _approver(config, args.yes), allow_dirty=args.allow_dirty
        )
        logger.info(
            "deployed {image}{note}", image=outcome.image, note="" if outcome.changed else " (no changes)"
        )
        return 0
    except DeployConfigError as exc:
        logger.error(str(exc))
        return 2
    except DeployError as exc:
        logger.error(str(exc))
        return 1
    except (BotoCoreError, ClientError) as exc:
        logger.error("AWS call failed: {error}", error=str(exc))
        return 1


if __name__ == "__main__":
    sys.exit(main())
