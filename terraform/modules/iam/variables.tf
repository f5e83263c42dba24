variable "task_family" {
  description = "ECS task definition family the scheduler may run (every revision of it)."
  type        = string
  default     = "qbo-invoice-processor"

  validation {
    condition     = can(regex("^[A-Za-z0-9_-]{1,255}$", var.task_family))
    error_message = "A task family is 1-255 letters, digits, hyphens and underscores."
  }
}

variable "cluster_arn" {
  description = "ARN of the ECS cluster the scheduler may run the task in (ecs:cluster condition)."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:ecs:[a-z0-9-]+:[0-9]{12}:cluster/.+$", var.cluster_arn))
    error_message = "cluster_arn must be an ECS cluster ARN (arn:aws:ecs:<region>:<account>:cluster/<name>)."
  }
}

variable "readable_secret_arns" {
  description = "ARNs of the secrets the jobs read (QBO, MS Graph, ClickUp, Robocorp): full ARNs with the random suffix, as returned by data.aws_secretsmanager_secret."
  type        = list(string)

  validation {
    condition     = length(var.readable_secret_arns) > 0 && alltrue([for arn in var.readable_secret_arns : can(regex("^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:[^*?]+$", arn))])
    error_message = "readable_secret_arns must list at least one Secrets Manager secret ARN, without wildcards."
  }
}

variable "writable_secret_arn" {
  description = "ARN of the one secret the jobs may write (PutSecretValue): the QBO secret, whose refresh token rotates."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:[^*?]+$", var.writable_secret_arn))
    error_message = "writable_secret_arn must be one Secrets Manager secret ARN, without wildcards."
  }
}

variable "secret_kms_key_arns" {
  description = "Customer managed KMS keys the secrets are encrypted with, if any (kms:Decrypt/GenerateDataKey through Secrets Manager only). Empty when the secrets use the AWS managed key aws/secretsmanager."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for arn in var.secret_kms_key_arns : can(regex("^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/.+$", arn))])
    error_message = "secret_kms_key_arns must hold KMS key ARNs (arn:aws:kms:<region>:<account>:key/<id>)."
  }
}

variable "registry_table_arn" {
  description = "ARN of the client registry table (read only)."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:dynamodb:[a-z0-9-]+:[0-9]{12}:table/[A-Za-z0-9_.-]+$", var.registry_table_arn))
    error_message = "registry_table_arn must be a DynamoDB table ARN."
  }
}

variable "ledger_table_arn" {
  description = "ARN of the ledger table (read and write)."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:dynamodb:[a-z0-9-]+:[0-9]{12}:table/[A-Za-z0-9_.-]+$", var.ledger_table_arn))
    error_message = "ledger_table_arn must be a DynamoDB table ARN."
  }
}

variable "dead_letter_queue_arns" {
  description = "SQS dead-letter queues the scheduler writes failed invocations to."
  type        = list(string)

  validation {
    condition     = length(var.dead_letter_queue_arns) > 0 && alltrue([for arn in var.dead_letter_queue_arns : can(regex("^arn:aws[a-z-]*:sqs:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_-]+$", arn))])
    error_message = "dead_letter_queue_arns must list at least one SQS queue ARN."
  }
}

variable "metrics_namespace" {
  description = "CloudWatch namespace the jobs (and the missed-run check) publish to; PutMetricData is allowed there only."
  type        = string
  default     = "QboInvoiceProcessor"

  validation {
    condition     = can(regex("^[A-Za-z0-9._/#:-]{1,255}$", var.metrics_namespace)) && !startswith(var.metrics_namespace, "AWS/")
    error_message = "The metrics namespace must be 1-255 characters (letters, digits, . _ / # : -) and must not start with AWS/."
  }
}

variable "execution_role_name" {
  description = "Name of the task execution role (the seed's name by default, so an existing hand-made role can be imported)."
  type        = string
  default     = "ecsTaskExecutionRole-QBOInvoiceProcessor"

  validation {
    condition     = can(regex("^[A-Za-z0-9+=,.@_-]{1,64}$", var.execution_role_name))
    error_message = "An IAM role name is 1-64 characters of letters, digits and + = , . @ _ -."
  }
}

variable "task_role_name" {
  description = "Name of the task role (the seed's name by default)."
  type        = string
  default     = "ecsTaskRole-QBOInvoiceProcessor"

  validation {
    condition     = can(regex("^[A-Za-z0-9+=,.@_-]{1,64}$", var.task_role_name))
    error_message = "An IAM role name is 1-64 characters of letters, digits and + = , . @ _ -."
  }
}

variable "task_policy_name" {
  description = "Name of the task role's inline policy."
  type        = string
  default     = "QBOInvoiceProcessorTaskPolicy"

  validation {
    condition     = can(regex("^[A-Za-z0-9+=,.@_-]{1,128}$", var.task_policy_name))
    error_message = "An IAM policy name is 1-128 characters of letters, digits and + = , . @ _ -."
  }
}

variable "scheduler_role_name" {
  description = "Name of the EventBridge Scheduler role."
  type        = string
  default     = "SchedulerRole-QBOInvoiceProcessor"

  validation {
    condition     = can(regex("^[A-Za-z0-9+=,.@_-]{1,57}$", var.scheduler_role_name))
    error_message = "The scheduler role name must be 1-57 characters (the inline policy name appends -policy) of letters, digits and + = , . @ _ -."
  }
}

variable "tags" {
  description = "Tags for the roles (added to the provider's default tags)."
  type        = map(string)
  default     = {}
}
