variable "name_prefix" {
  description = "Prefix of every alarm, rule and schedule name."
  type        = string
  default     = "qbo-invoice-processor"

  validation {
    condition     = can(regex("^[A-Za-z0-9_-]{1,32}$", var.name_prefix))
    error_message = "name_prefix must be 1-32 letters, digits, hyphens and underscores."
  }
}

variable "topic_name" {
  description = "SNS topic the alerts go to."
  type        = string
  default     = "qbo-invoice-processor-alerts"

  validation {
    condition     = can(regex("^[A-Za-z0-9_-]{1,256}$", var.topic_name))
    error_message = "An SNS topic name is 1-256 letters, digits, hyphens and underscores."
  }
}

variable "alert_emails" {
  description = "Email addresses subscribed to the alerts (each must confirm the subscription mail from AWS)."
  type        = list(string)

  validation {
    condition     = alltrue([for e in var.alert_emails : can(regex("^[^@\\s,;]+@[^@\\s,;]+\\.[^@\\s,;]+$", e))])
    error_message = "alert_emails must hold email addresses like ops@example.com."
  }
}

variable "kms_deletion_window_days" {
  description = "Waiting period before the topic's KMS key is deleted after a destroy (7-30 days)."
  type        = number
  default     = 30

  validation {
    condition     = var.kms_deletion_window_days >= 7 && var.kms_deletion_window_days <= 30
    error_message = "kms_deletion_window_days must be between 7 and 30."
  }
}

variable "cluster_arn" {
  description = "ECS cluster whose stopped tasks are watched."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:ecs:[a-z0-9-]+:[0-9]{12}:cluster/.+$", var.cluster_arn))
    error_message = "cluster_arn must be an ECS cluster ARN."
  }
}

variable "log_group_name" {
  description = "Log group of the jobs, named in the alert texts."
  type        = string
}

variable "dead_letter_queues" {
  description = "Dead-letter queues to alarm on, job name => SQS queue name."
  type        = map(string)
  default     = {}
}

variable "metrics_namespace" {
  description = "CloudWatch namespace of the jobs' RunCompleted metric."
  type        = string
  default     = "QboInvoiceProcessor"

  validation {
    condition     = can(regex("^[A-Za-z0-9._/#:-]{1,255}$", var.metrics_namespace)) && !startswith(var.metrics_namespace, "AWS/")
    error_message = "The metrics namespace must be 1-255 characters (letters, digits, . _ / # : -) and must not start with AWS/."
  }
}

variable "run_checks" {
  description = <<-EOT
    Missed-run alarms, job name (the metric's Job dimension) => settings. A run counts when it
    succeeded: RunCompleted - RunFailed (both published by every completed run).
    max_hours_without_run: look-back window in hours (2-168; CloudWatch evaluates at most 7 days).
    check_schedule_expression: null for a plain "no run for N hours" alarm (daily jobs); for jobs
    that run less often than weekly, the deadline (cron, in var.timezone) at which the window is
    checked, with check_dead_letter_queue_arn for that check schedule's failed invocations.
  EOT
  type = map(object({
    max_hours_without_run       = number
    check_schedule_expression   = optional(string)
    check_dead_letter_queue_arn = optional(string)
  }))
  default = {}

  validation {
    condition     = alltrue([for c in values(var.run_checks) : c.max_hours_without_run >= 2 && c.max_hours_without_run <= 168 && floor(c.max_hours_without_run) == c.max_hours_without_run])
    error_message = "max_hours_without_run must be a whole number of hours from 2 to 168: CloudWatch cannot evaluate an alarm over more than 7 days."
  }

  validation {
    condition     = alltrue([for c in values(var.run_checks) : c.check_schedule_expression == null || can(regex("^cron\\(\\S+ \\S+ \\S+ \\S+ \\S+ \\S+\\)$", c.check_schedule_expression))])
    error_message = "check_schedule_expression must be a cron(<6 fields>) expression, e.g. cron(0 9 5 * ? *)."
  }
}

variable "timezone" {
  description = "IANA time zone of the check schedules (the same as the jobs' schedules)."
  type        = string
  default     = "America/Los_Angeles"

  validation {
    condition     = can(regex("^(UTC|Etc/[A-Za-z0-9+-]+|[A-Z][A-Za-z_-]+(/[A-Z][A-Za-z0-9_+-]+){1,2})$", var.timezone))
    error_message = "timezone must be an IANA time zone name such as America/Los_Angeles or UTC."
  }
}

variable "enabled" {
  description = "false pauses the missed-run checks: the deadline check schedules are DISABLED and the missed-run alarms' actions are off. Set it together with the job schedules (schedules_enabled), so a planned pause raises no alarm."
  type        = bool
  default     = true
}

variable "scheduler_role_arn" {
  description = "Role the check schedules use (cloudwatch:PutMetricData in the namespace, sqs:SendMessage to the dead-letter queue). Required when a run check has a check schedule."
  type        = string
  default     = null

  validation {
    condition     = var.scheduler_role_arn == null || can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:role/.+$", var.scheduler_role_arn))
    error_message = "scheduler_role_arn must be an IAM role ARN."
  }
}

variable "tags" {
  description = "Tags for the alarms, topic, key and rule (added to the provider's default tags)."
  type        = map(string)
  default     = {}
}
