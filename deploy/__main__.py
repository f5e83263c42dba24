"""``python -m deploy build|push|plan|deploy|adopt`` (what ``make build/push/plan/deploy/adopt`` run).

Settings: the state backend in terraform/envs/prod/backend.hcl and the stack's values in
terraform/envs/prod/terraform.tfvars (both git-ignored; see deploy.config). From the environment:
AWS_REGION, ECR_REPOSITORY (default qbo-invoice-processor), TF_VAR_FILE (an extra tfvars file) and
DEPLOY_AUTO_APPROVE=1 to apply without a prompt (required when stdin is not a terminal). The image
platform follows the stack's cpu_architecture. AWS credentials are boto3's and Terraform's usual
ones (profile, env or SSO).

Exit codes: 0 done, 1 a step failed (or adoption left steps for a person), 2 configuration incomplete.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from loguru import logger

from deploy import DeployConfigError, DeployError
from deploy.config import COMMANDS, DeployConfig, load_config
from deploy.image import SubprocessRunner
from deploy.terraform import PlanResult, TerraformStack

REPO_ROOT = Path(__file__).resolve().parent.parent


def _ask(question: str, config: DeployConfig, yes: bool) -> bool:
    if yes or config.auto_approve:
        return True
    if not sys.stdin.isatty():
        logger.error("stdin is not a terminal: set DEPLOY_AUTO_APPROVE=1 (or --yes) to go ahead unattended")
        return False
    return input(f"{question} Only 'yes' goes ahead: ").strip() == "yes"


def _approver(config: DeployConfig, yes: bool) -> Callable[[PlanResult], bool]:
    def approve(result: PlanResult) -> bool:
        print(result.output, file=sys.stderr)
        return _ask("Apply this plan?", config, yes)

    return approve


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=COMMANDS)
    parser.add_argument("--allow-dirty", action="store_true", help="build even with uncommitted changes")
    parser.add_argument("--yes", action="store_true", help="deploy/adopt: go ahead without asking")
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
        var_files = [config.var_file] if config.var_file else []
        stack = TerraformStack(config.terraform_dir, var_files=var_files)
        if args.command == "build":
            local = pipeline.build(config, runner, stack, allow_dirty=args.allow_dirty)
            logger.info("built {image}", image=local)
            return 0
        session = boto3.session.Session(region_name=config.aws_region)
        if args.command == "adopt":
            return _adopt(config, session.client, stack, args.yes)
        ecr = session.client("ecr")
        if args.command == "push":
            pushed = pipeline.push(config, runner, ecr, allow_dirty=args.allow_dirty)
            logger.info("pushed {image}", image=pushed.ref)
            return 0
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


def _adopt(config: DeployConfig, client: Callable[[str], Any], stack: TerraformStack, yes: bool) -> int:
    from deploy import adopt

    return adopt.run(config, client, stack, lambda question: _ask(question, config, yes))


if __name__ == "__main__":
    sys.exit(main())
