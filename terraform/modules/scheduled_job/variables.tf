variable "name_prefix" {
  description = "Prefix of the schedule and queue names."
  type        = string
  default     = "qbo-invoice-processor"

  validation {
    condition     = can(regex("^[A-Za-z0-9_-]{1,32}$", var.name_prefix))
    error_message = "name_prefix must be 1-32 letters, digits, hyphens and underscores."
  }
}

variable "job_name" {
  description = "Job name, e.g. create-invoices; names the schedule `<name_prefix>-<job_name>` and its dead-letter queue."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9-]{1,24}$", var.job_name))
    error_message = "job_name must be 1-24 lowercase letters, digits and hyphens."
  }
}

variable "description" {
  description = "Human description of the schedule."
  type        = string
  default     = ""

  validation {
    condition     = length(var.description) <= 512
    error_message = "A schedule description is at most 512 characters."
  }
}

variable "schedule_expression" {
  description = "When to run, in the time zone below: cron(min hour day-of-month month day-of-week year), rate(n unit) or at(yyyy-mm-ddThh:mm:ss)."
  type        = string

  validation {
    condition = (
      can(regex("^cron\\(\\S+ \\S+ \\S+ \\S+ \\S+ \\S+\\)$", var.schedule_expression)) ||
      can(regex("^rate\\([1-9][0-9]* (minute|minutes|hour|hours|day|days)\\)$", var.schedule_expression)) ||
      can(regex("^at\\([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\)$", var.schedule_expression))
    )
    error_message = "schedule_expression must be cron(<6 fields>), e.g. cron(0 9 4 * ? *), rate(<n> <minutes|hours|days>) or at(yyyy-mm-ddThh:mm:ss)."
  }

  validation {
    condition     = !can(regex("^cron\\(", var.schedule_expression)) || can(regex("^cron\\(\\S+ \\S+ (\\? \\S+ \\S+|\\S+ \\S+ \\?) \\S+\\)$", var.schedule_expression))
    error_message = "In a cron expression exactly one of day-of-month (3rd field) and day-of-week (5th field) must be ?, e.g. cron(0 5 * * ? *)."
  }
}

variable "timezone" {
  description = "IANA time zone the schedule expression is read in; daylight saving time is followed automatically."
  type        = string
  default     = "America/Los_Angeles"

  validation {
    condition     = can(regex("^(UTC|Etc/[A-Za-z0-9+-]+|[A-Z][A-Za-z_-]+(/[A-Z][A-Za-z0-9_+-]+){1,2})$", var.timezone))
    error_message = "timezone must be an IANA time zone name such as America/Los_Angeles or UTC."
  }
}

variable "enabled" {
  description = "Whether the schedule fires (ENABLED) or is paused (DISABLED)."
  type        = bool
  default     = true
}

variable "cluster_arn" {
  description = "ECS cluster the task runs in."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:ecs:[a-z0-9-]+:[0-9]{12}:cluster/.+$", var.cluster_arn))
    error_message = "cluster_arn must be an ECS cluster ARN."
  }
}

variable "task_definition_arn" {
  description = "Task definition ARN including its revision (…:task-definition/<family>:<revision>)."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:ecs:[a-z0-9-]+:[0-9]{12}:task-definition/[A-Za-z0-9_-]+:[0-9]+$", var.task_definition_arn))
    error_message = "task_definition_arn must be a task definition ARN with its revision, e.g. arn:aws:ecs:us-west-2:123456789012:task-definition/qbo-invoice-processor:7."
  }
}

variable "container_name" {
  description = "Container the command override applies to."
  type        = string
  default     = "invoice-processor"
}

variable "command" {
  description = "Command override for the container, e.g. [\"--create-invoices\"]."
  type        = list(string)

  validation {
    condition     = length(var.command) > 0
    error_message = "command must hold at least the job flag, e.g. [\"--send-invoices\"]."
  }
}

variable "subnet_ids" {
  description = "Subnets the task runs in (awsvpc)."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) > 0 && alltrue([for id in var.subnet_ids : can(regex("^subnet-[0-9a-f]+$", id))])
    error_message = "subnet_ids must list at least one subnet id (subnet-…)."
  }
}

variable "security_group_ids" {
  description = "Security groups of the task (outbound HTTPS is all the jobs need)."
  type        = list(string)

  validation {
    condition     = length(var.security_group_ids) > 0 && alltrue([for id in var.security_group_ids : can(regex("^sg-[0-9a-f]+$", id))])
    error_message = "security_group_ids must list at least one security group id (sg-…)."
  }
}

variable "assign_public_ip" {
  description = "Give the task a public IP: needed in public subnets (internet gateway, no NAT). false in private subnets, which then need a NAT gateway: the jobs call QBO, Graph, ClickUp and Robocorp on the internet, which VPC endpoints cannot reach."
  type        = bool
}

variable "scheduler_role_arn" {
  description = "Role EventBridge Scheduler assumes to run the task and write the dead-letter queue."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:role/.+$", var.scheduler_role_arn))
    error_message = "scheduler_role_arn must be an IAM role ARN."
  }
}

variable "maximum_event_age_in_seconds" {
  description = "How long EventBridge Scheduler keeps retrying a failed RunTask call (60-86400 s). The job reads SCHEDULED_TIME, so a late start still processes the intended period."
  type        = number
  default     = 3600

  validation {
    condition     = var.maximum_event_age_in_seconds >= 60 && var.maximum_event_age_in_seconds <= 86400
    error_message = "maximum_event_age_in_seconds must be between 60 and 86400."
  }
}

variable "maximum_retry_attempts" {
  description = "How many times EventBridge Scheduler retries a failed RunTask call (0-185). Retries cover starting the task, not a task that ran and failed."
  type        = number
  default     = 10

  validation {
    condition     = var.maximum_retry_attempts >= 0 && var.maximum_retry_attempts <= 185 && floor(var.maximum_retry_attempts) == var.maximum_retry_attempts
    error_message = "maximum_retry_attempts must be a whole number between 0 and 185."
  }
}

variable "dead_letter_retention_seconds" {
  description = "How long undeliverable invocations stay in the dead-letter queue (max 14 days)."
  type        = number
  default     = 1209600

  validation {
    condition     = var.dead_letter_retention_seconds >= 60 && var.dead_letter_retention_seconds <= 1209600
    error_message = "dead_letter_retention_seconds must be between 60 and 1209600 (14 days)."
  }
}

variable "tags" {
  description = "Tags for the queue (added to the provider's default tags; schedules take no tags)."
  type        = map(string)
  default     = {}
}
