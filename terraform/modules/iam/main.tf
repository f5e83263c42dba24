data "aws_caller_identity" "current" {}
data "aws_region" "current" {}
data "aws_partition" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  region     = data.aws_region.current.name
  partition  = data.aws_partition.current.partition

  # Every revision of the one task family: the schedules follow the newest revision, so the
  # permission must not name a revision number.
  task_family_arn = "arn:${local.partition}:ecs:${local.region}:${local.account_id}:task-definition/${var.task_family}:*"
}

# ---------------------------------------------------------------------------------------------
# Execution role: used by ECS itself to pull the image and write the awslogs stream.
# ---------------------------------------------------------------------------------------------
# The execution role keeps the plain ECS trust AWS documents for it.
data "aws_iam_policy_document" "execution_trust" {
  statement {
    sid     = "EcsTasksAssumeRole"
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "execution" {
  name               = var.execution_role_name
  description        = "ECS pulls the ${var.task_family} image and writes its logs with this role."
  assume_role_policy = data.aws_iam_policy_document.execution_trust.json
  tags               = var.tags
}

resource "aws_iam_role_policy_attachment" "execution" {
  role       = aws_iam_role.execution.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
}

# ---------------------------------------------------------------------------------------------
# Task role: what the jobs themselves may do.
# ---------------------------------------------------------------------------------------------
# Task role trust with the confused-deputy guard AWS recommends for task roles: only tasks of
# this account, in this region, may assume it.
data "aws_iam_policy_document" "task_trust" {
  statement {
    sid     = "EcsTasksOfThisAccountAssumeRole"
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }

    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = ["arn:${local.partition}:ecs:${local.region}:${local.account_id}:*"]
    }
  }
}

resource "aws_iam_role" "task" {
  name               = var.task_role_name
  description        = "The ${var.task_family} jobs: read their four secrets, rotate the QBO token, use the registry and ledger tables, publish run metrics."
  assume_role_policy = data.aws_iam_policy_document.task_trust.json
  tags               = var.tags
}

data "aws_iam_policy_document" "task" {
  statement {
    sid       = "ReadTheFourSecrets"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = var.readable_secret_arns
  }

  # QBO refresh tokens rotate on every refresh; the job must store the new one before using
  # the access token, or the integration is lost. Only this secret is writable.
  statement {
    sid       = "RotateTheQboRefreshToken"
    actions   = ["secretsmanager:PutSecretValue"]
    resources = [var.writable_secret_arn]
  }

  dynamic "statement" {
    for_each = length(var.secret_kms_key_arns) > 0 ? [1] : []
    content {
      sid       = "UseTheSecretsCustomerManagedKeys"
      actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
      resources = var.secret_kms_key_arns

      condition {
        test     = "StringEquals"
        variable = "kms:ViaService"
        values   = ["secretsmanager.${local.region}.amazonaws.com"]
      }
    }
  }

  statement {
    sid       = "ReadTheClientRegistry"
    actions   = ["dynamodb:Scan", "dynamodb:GetItem", "dynamodb:Query"]
    resources = [var.registry_table_arn]
  }

  statement {
    sid = "UseTheLedger"
    actions = [
      "dynamodb:GetItem",
      "dynamodb:PutItem",
      "dynamodb:UpdateItem",
      "dynamodb:DeleteItem",
      "dynamodb:Query",
      "dynamodb:Scan",
    ]
    resources = [var.ledger_table_arn]
  }

  # PutMetricData supports no resource ARNs (AWS requires "*"); the namespace condition is the
  # only way to scope it, and it keeps the jobs out of every other namespace.
  statement {
    sid       = "PublishRunMetrics"
    actions   = ["cloudwatch:PutMetricData"]
    resources = ["*"]

    condition {
      test     = "StringEquals"
      variable = "cloudwatch:namespace"
      values   = [var.metrics_namespace]
    }
  }
}

resource "aws_iam_role_policy" "task" {
  name   = var.task_policy_name
  role   = aws_iam_role.task.id
  policy = data.aws_iam_policy_document.task.json
}

# ---------------------------------------------------------------------------------------------
# Scheduler role: EventBridge Scheduler starts the tasks, writes failed invocations to the
# dead-letter queues and (for the monthly missed-run check) publishes the "check due" metric.
# ---------------------------------------------------------------------------------------------
data "aws_iam_policy_document" "scheduler_trust" {
  statement {
    sid     = "SchedulerAssumeRole"
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["scheduler.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "scheduler" {
  name               = var.scheduler_role_name
  description        = "EventBridge Scheduler runs the ${var.task_family} tasks with this role."
  assume_role_policy = data.aws_iam_policy_document.scheduler_trust.json
  tags               = var.tags
}

data "aws_iam_policy_document" "scheduler" {
  statement {
    sid       = "RunTheTaskFamilyInTheCluster"
    actions   = ["ecs:RunTask"]
    resources = [local.task_family_arn]

    condition {
      test     = "ArnEquals"
      variable = "ecs:cluster"
      values   = [var.cluster_arn]
    }
  }

  statement {
    sid       = "PassOnlyTheTwoTaskRoles"
    actions   = ["iam:PassRole"]
    resources = [aws_iam_role.execution.arn, aws_iam_role.task.arn]

    condition {
      test     = "StringEquals"
      variable = "iam:PassedToService"
      values   = ["ecs-tasks.amazonaws.com"]
    }
  }

  statement {
    sid       = "WriteFailedInvocationsToTheDeadLetterQueues"
    actions   = ["sqs:SendMessage"]
    resources = var.dead_letter_queue_arns
  }

  # The monthly missed-run check is a schedule calling cloudwatch:PutMetricData directly.
  statement {
    sid       = "PublishMissedRunCheckMetric"
    actions   = ["cloudwatch:PutMetricData"]
    resources = ["*"]

    condition {
      test     = "StringEquals"
      variable = "cloudwatch:namespace"
      values   = [var.metrics_namespace]
    }
  }
}

resource "aws_iam_role_policy" "scheduler" {
  name   = "${var.scheduler_role_name}-policy"
  role   = aws_iam_role.scheduler.id
  policy = data.aws_iam_policy_document.scheduler.json
}
