data "aws_caller_identity" "current" {}
data "aws_region" "current" {}
data "aws_partition" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  region     = data.aws_region.current.name
  partition  = data.aws_partition.current.partition

  # Jobs whose missed-run alarm is a plain "no run for N hours" alarm (fits CloudWatch's 7-day
  # evaluation limit) and jobs whose schedule is too sparse for that (monthly): those get a
  # deadline check, see README.
  plain_checks    = { for job, c in var.run_checks : job => c if c.check_schedule_expression == null }
  deadline_checks = { for job, c in var.run_checks : job => c if c.check_schedule_expression != null }

  alarm_arn_prefix = "arn:${local.partition}:cloudwatch:${local.region}:${local.account_id}:alarm:${var.name_prefix}-"

  # The failure mail's text. A plain-text input template (not a JSON string): EventBridge hands the
  # template to SNS as it is, placeholders filled in, so a JSON string would arrive with its quotes
  # and every line break as a literal "\n" on one line. Values are inserted as they are (EventBridge
  # does not escape them); a path missing from the event (exitCode of a task that never started)
  # leaves its placeholder empty, hence the hint on that line.
  failure_message = join("\n", [
    "A ${var.name_prefix} task stopped abnormally.",
    "",
    "Time (UTC):      <time>",
    "Exit code:       <exitCode>   (empty: the container never ran)",
    "Stop code:       <stopCode>",
    "Stopped reason:  <stoppedReason>",
    "Started by:      <startedBy>",
    "Task:            <task>",
    "Task definition: <taskDefinition>",
    "",
    "Exit code 1: some clients or invoices were not finished (the others were processed); the next scheduled run picks them up, the bookkeeper's mail lists them.",
    "Exit code 2: the run could not start (configuration, a secret, or QBO needs re-authorisation: make qbo-auth).",
    "No exit code: the task never started (image pull, network, IAM); the stopped reason says why.",
    "",
    "Logs: CloudWatch log group ${var.log_group_name}, stream ecs/<container>/ followed by the last part of the task ARN above; the job's summary is the last log line.",
    "",
  ])
}

# ---------------------------------------------------------------------------------------------
# Alert topic. EventBridge and CloudWatch alarms can only publish to an encrypted topic whose
# KMS key policy lets them use the key: the AWS managed key alias/aws/sns cannot be changed to
# allow that (messages would be dropped silently), hence a small customer managed key.
# ---------------------------------------------------------------------------------------------
resource "aws_kms_key" "alerts" {
  description             = "Encrypts the ${var.topic_name} SNS topic; usable by EventBridge and CloudWatch alarms of this account."
  enable_key_rotation     = true
  deletion_window_in_days = var.kms_deletion_window_days
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid       = "AccountAdministersTheKey"
        Effect    = "Allow"
        Principal = { AWS = "arn:${local.partition}:iam::${local.account_id}:root" }
        Action    = "kms:*"
        Resource  = "*"
      },
      # EventBridge does not send aws:SourceAccount / aws:SourceArn when it calls KMS for an SNS
      # target, so any aws:Source* condition here would deny it and every task-failure alert would
      # be dropped silently. The topic policy below already lets only our rule publish.
      {
        Sid       = "EventBridgeUsesTheKey"
        Effect    = "Allow"
        Principal = { Service = "events.amazonaws.com" }
        Action    = ["kms:GenerateDataKey*", "kms:Decrypt"]
        Resource  = "*"
      },
      # CloudWatch alarms do send the source context: keep the guard to alarms of this account.
      {
        Sid       = "CloudWatchAlarmsOfThisAccountUseTheKey"
        Effect    = "Allow"
        Principal = { Service = "cloudwatch.amazonaws.com" }
        Action    = ["kms:GenerateDataKey*", "kms:Decrypt"]
        Resource  = "*"
        Condition = { StringEquals = { "aws:SourceAccount" = local.account_id } }
      },
    ]
  })
  tags = var.tags
}

resource "aws_kms_alias" "alerts" {
  name          = "alias/${var.topic_name}"
  target_key_id = aws_kms_key.alerts.key_id
}

resource "aws_sns_topic" "alerts" {
  name              = var.topic_name
  kms_master_key_id = aws_kms_key.alerts.arn
  tags              = var.tags
}

data "aws_iam_policy_document" "alerts_topic" {
  statement {
    sid       = "TaskFailureRulePublishes"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.alerts.arn]

    principals {
      type        = "Service"
      identifiers = ["events.amazonaws.com"]
    }

    condition {
      test     = "ArnEquals"
      variable = "aws:SourceArn"
      values   = [aws_cloudwatch_event_rule.task_failed.arn]
    }
  }

  statement {
    sid       = "OurAlarmsPublish"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.alerts.arn]

    principals {
      type        = "Service"
      identifiers = ["cloudwatch.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }

    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = ["${local.alarm_arn_prefix}*"]
    }
  }
}

resource "aws_sns_topic_policy" "alerts" {
  arn    = aws_sns_topic.alerts.arn
  policy = data.aws_iam_policy_document.alerts_topic.json
}

# Each address receives a confirmation mail from AWS; alerts flow only after it is confirmed.
resource "aws_sns_topic_subscription" "email" {
  for_each  = toset(var.alert_emails)
  topic_arn = aws_sns_topic.alerts.arn
  protocol  = "email"
  endpoint  = each.value
}

# ---------------------------------------------------------------------------------------------
# A task of the cluster stopped with a non-zero exit code, or never started.
# ---------------------------------------------------------------------------------------------
resource "aws_cloudwatch_event_rule" "task_failed" {
  name        = "${var.name_prefix}-task-failed"
  description = "A ${var.name_prefix} task stopped with a non-zero exit code or failed to start."
  event_pattern = jsonencode({
    source        = ["aws.ecs"]
    "detail-type" = ["ECS Task State Change"]
    detail = {
      clusterArn = [var.cluster_arn]
      lastStatus = ["STOPPED"]
      # OR across fields: some container exited non-zero (EventBridge matches any element of the
      # containers array), or the task never started (then containers carry no exit code).
      "$or" = [
        { containers = { exitCode = [{ "anything-but" = 0 }] } },
        { stopCode = ["TaskFailedToStart"] },
      ]
    }
  })
  tags = var.tags
}

resource "aws_cloudwatch_event_target" "task_failed_to_sns" {
  rule      = aws_cloudwatch_event_rule.task_failed.name
  target_id = "alerts-topic"
  arn       = aws_sns_topic.alerts.arn

  input_transformer {
    input_paths = {
      time           = "$.time"
      task           = "$.detail.taskArn"
      taskDefinition = "$.detail.taskDefinitionArn"
      startedBy      = "$.detail.startedBy"
      stopCode       = "$.detail.stopCode"
      stoppedReason  = "$.detail.stoppedReason"
      exitCode       = "$.detail.containers[0].exitCode"
      container      = "$.detail.containers[0].name"
    }
    input_template = local.failure_message
  }
}

# ---------------------------------------------------------------------------------------------
# A schedule could not start its task (the invocation went to the dead-letter queue).
# ---------------------------------------------------------------------------------------------
resource "aws_cloudwatch_metric_alarm" "dead_letter" {
  for_each            = var.dead_letter_queues
  alarm_name          = "${var.name_prefix}-${each.key}-dlq-not-empty"
  alarm_description   = "EventBridge Scheduler could not start the ${each.key} task; the failed invocation is in SQS queue ${each.value}. Read it for the error, fix, then run the job by hand."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = each.value }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alerts.arn]
  ok_actions          = [aws_sns_topic.alerts.arn]
  tags                = var.tags
}

# ---------------------------------------------------------------------------------------------
# Missed runs. Every completed run publishes RunCompleted=1 and RunFailed=0|1 (dimension Job), so
# a successful run (exit 0) is RunCompleted - RunFailed. CloudWatch limits period x evaluation
# periods to 7 days, so:
#  * frequent jobs: alarm when no run succeeded in the last N hours (missing data = breaching);
#  * sparse jobs (the monthly window): a "no success in the last N hours" alarm without actions, a
#    check schedule publishing RunCheckDue=1 at the deadline, and a composite alarm that notifies
#    only when both are in ALARM, i.e. at the deadline no run succeeded in the window before it.
# None of them has ok_actions on the composite: its check signal ages out after 3 hours, which
# would send "OK" while the run is still missing. schedules_enabled=false (var.enabled) pauses the
# check schedules and turns the alarms' actions off, so a planned pause raises nothing.
# ---------------------------------------------------------------------------------------------
resource "aws_cloudwatch_metric_alarm" "no_run" {
  for_each            = var.run_checks
  alarm_name          = "${var.name_prefix}-${each.key}-no-success-${each.value.max_hours_without_run}h"
  evaluation_periods  = each.value.max_hours_without_run
  datapoints_to_alarm = each.value.max_hours_without_run
  comparison_operator = "LessThanThreshold"
  threshold           = 1
  treat_missing_data  = "breaching"
  actions_enabled     = var.enabled
  alarm_description = (
    each.value.check_schedule_expression == null
    ? "No ${each.key} run succeeded (exit 0) in the last ${each.value.max_hours_without_run} hours: the schedule did not fire, the task did not start, it hung, or every run failed. Check the schedule, the dead-letter queue and the log group ${var.log_group_name}."
    : "No ${each.key} run succeeded (exit 0) in the last ${each.value.max_hours_without_run} hours. Normal between monthly windows, so this alarm has no actions; ${var.name_prefix}-${each.key}-missed-run notifies."
  )
  alarm_actions = each.value.check_schedule_expression == null ? [aws_sns_topic.alerts.arn] : []
  ok_actions    = each.value.check_schedule_expression == null ? [aws_sns_topic.alerts.arn] : []
  tags          = var.tags

  metric_query {
    id          = "succeeded"
    label       = "Successful ${each.key} runs"
    expression  = "FILL(completed, 0) - FILL(failed, 0)"
    return_data = true
  }

  dynamic "metric_query" {
    for_each = { completed = "RunCompleted", failed = "RunFailed" }
    content {
      id = metric_query.key
      metric {
        namespace   = var.metrics_namespace
        metric_name = metric_query.value
        dimensions  = { Job = each.key }
        stat        = "Sum"
        period      = 3600
      }
    }
  }
}

resource "aws_cloudwatch_metric_alarm" "check_due" {
  for_each            = local.deadline_checks
  alarm_name          = "${var.name_prefix}-${each.key}-check-due"
  alarm_description   = "The ${each.key} deadline check fired within the last 3 hours (published by schedule ${var.name_prefix}-${each.key}-check). No actions: input of the missed-run composite alarm."
  namespace           = var.metrics_namespace
  metric_name         = "RunCheckDue"
  dimensions          = { Job = each.key }
  statistic           = "Sum"
  period              = 3600
  evaluation_periods  = 3
  datapoints_to_alarm = 1
  comparison_operator = "GreaterThanOrEqualToThreshold"
  threshold           = 1
  treat_missing_data  = "notBreaching"
  actions_enabled     = var.enabled
  tags                = var.tags
}

resource "aws_cloudwatch_composite_alarm" "missed_run" {
  for_each          = local.deadline_checks
  alarm_name        = "${var.name_prefix}-${each.key}-missed-run"
  alarm_description = "The ${each.key} deadline passed (${each.value.check_schedule_expression}, ${var.timezone}) and no run succeeded in the ${each.value.max_hours_without_run} hours before it. Check the schedule, its dead-letter queue and the log group ${var.log_group_name}, fix, then run the job by hand (see docs/runbook.md). This alarm sends no OK: it stays quiet until the next deadline."
  alarm_rule        = "ALARM(\"${aws_cloudwatch_metric_alarm.check_due[each.key].alarm_name}\") AND ALARM(\"${aws_cloudwatch_metric_alarm.no_run[each.key].alarm_name}\")"
  actions_enabled   = var.enabled
  alarm_actions     = [aws_sns_topic.alerts.arn]
  tags              = var.tags
}

resource "aws_scheduler_schedule" "check" {
  #checkov:skip=CKV_AWS_297:The schedule holds no sensitive data (a metric name and a job name); the AWS owned key EventBridge Scheduler uses by default is enough.
  for_each                     = local.deadline_checks
  name                         = "${var.name_prefix}-${each.key}-check"
  group_name                   = "default"
  description                  = "Deadline of the ${each.key} run: publishes RunCheckDue so the missed-run alarm can look back."
  schedule_expression          = each.value.check_schedule_expression
  schedule_expression_timezone = var.timezone
  state                        = var.enabled ? "ENABLED" : "DISABLED"

  flexible_time_window {
    mode = "OFF"
  }

  target {
    # Universal target: EventBridge Scheduler calls cloudwatch:PutMetricData itself, no code.
    arn      = "arn:aws:scheduler:::aws-sdk:cloudwatch:putMetricData"
    role_arn = var.scheduler_role_arn
    input = jsonencode({
      Namespace = var.metrics_namespace
      MetricData = [
        {
          MetricName = "RunCheckDue"
          Dimensions = [{ Name = "Job", Value = each.key }]
          Value      = 1
          Unit       = "Count"
        },
      ]
    })

    retry_policy {
      maximum_event_age_in_seconds = 3600
      maximum_retry_attempts       = 10
    }

    dead_letter_config {
      arn = each.value.check_dead_letter_queue_arn
    }
  }

  lifecycle {
    precondition {
      condition     = each.value.check_dead_letter_queue_arn != null && var.scheduler_role_arn != null
      error_message = "run_checks[\"${each.key}\"] has a check schedule: set its check_dead_letter_queue_arn and the module's scheduler_role_arn."
    }
  }
}
