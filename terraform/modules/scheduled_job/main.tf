data "aws_caller_identity" "current" {}
data "aws_region" "current" {}
data "aws_partition" "current" {}

locals {
  schedule_name = "${var.name_prefix}-${var.job_name}"
  queue_name    = "${local.schedule_name}-dlq"
  queue_arn     = "arn:${data.aws_partition.current.partition}:sqs:${data.aws_region.current.name}:${data.aws_caller_identity.current.account_id}:${local.queue_name}"

  # The job reads SCHEDULED_TIME so a late retry still bills the right month. jsonencode escapes
  # "<" and ">" as \u003c / \u003e, which would hide the placeholder from EventBridge Scheduler's
  # substitution, so they are put back verbatim.
  input = replace(replace(jsonencode({
    containerOverrides = [
      {
        name    = var.container_name
        command = var.command
        environment = [
          { name = "SCHEDULED_TIME", value = "<aws.scheduler.scheduled-time>" },
        ]
      },
    ]
  }), "\\u003c", "<"), "\\u003e", ">")
}

# Invocations EventBridge Scheduler could not deliver (RunTask refused, throttled past the retry
# budget) land here instead of vanishing; an alarm watches the queue.
resource "aws_sqs_queue" "dead_letter" {
  name                      = local.queue_name
  message_retention_seconds = var.dead_letter_retention_seconds
  sqs_managed_sse_enabled   = true
  # The queue policy is set with the queue (one API call, deleted with it) rather than as a
  # separate aws_sqs_queue_policy, which waits for propagation on create and destroy.
  policy = data.aws_iam_policy_document.dead_letter.json
  tags   = var.tags
}

data "aws_iam_policy_document" "dead_letter" {
  statement {
    sid       = "SchedulerRoleSendsFailedInvocations"
    actions   = ["sqs:SendMessage"]
    resources = [local.queue_arn]

    principals {
      type        = "AWS"
      identifiers = [var.scheduler_role_arn]
    }
  }

  statement {
    sid       = "DenyUnencryptedTransport"
    effect    = "Deny"
    actions   = ["sqs:SendMessage", "sqs:ReceiveMessage", "sqs:DeleteMessage"]
    resources = [local.queue_arn]

    principals {
      type        = "AWS"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_scheduler_schedule" "this" {
  #checkov:skip=CKV_AWS_297:The schedule holds no sensitive data (a cron expression, a command flag and subnet ids); the AWS owned key EventBridge Scheduler uses by default is enough.
  name                         = local.schedule_name
  group_name                   = "default"
  description                  = var.description
  schedule_expression          = var.schedule_expression
  schedule_expression_timezone = var.timezone
  state                        = var.enabled ? "ENABLED" : "DISABLED"

  flexible_time_window {
    mode = "OFF"
  }

  target {
    arn      = var.cluster_arn
    role_arn = var.scheduler_role_arn
    input    = local.input

    ecs_parameters {
      # With its revision: a new image registers a new revision, which updates this schedule.
      task_definition_arn = var.task_definition_arn
      launch_type         = "FARGATE"
      task_count          = 1

      network_configuration {
        subnets          = var.subnet_ids
        security_groups  = var.security_group_ids
        assign_public_ip = var.assign_public_ip
      }
    }

    retry_policy {
      maximum_event_age_in_seconds = var.maximum_event_age_in_seconds
      maximum_retry_attempts       = var.maximum_retry_attempts
    }

    dead_letter_config {
      arn = aws_sqs_queue.dead_letter.arn
    }
  }
}
