variable "cluster_name" {
  description = "ECS cluster name."
  type        = string
  default     = "qbo-invoice-processor-cluster"

  validation {
    condition     = can(regex("^[A-Za-z0-9_-]{1,255}$", var.cluster_name))
    error_message = "A cluster name is 1-255 letters, digits, hyphens and underscores."
  }
}

variable "container_insights" {
  description = "Container Insights level for the cluster: enabled, enhanced or disabled."
  type        = string
  default     = "enabled"

  validation {
    condition     = contains(["enabled", "enhanced", "disabled"], var.container_insights)
    error_message = "container_insights must be enabled, enhanced or disabled."
  }
}

variable "family" {
  description = "Task definition family (one family; both jobs differ only by the command override)."
  type        = string
  default     = "qbo-invoice-processor"

  validation {
    condition     = can(regex("^[A-Za-z0-9_-]{1,255}$", var.family))
    error_message = "A task family is 1-255 letters, digits, hyphens and underscores."
  }
}

variable "container_name" {
  description = "Container name; the schedules' command overrides address it by this name."
  type        = string
  default     = "invoice-processor"

  validation {
    condition     = can(regex("^[A-Za-z0-9_-]{1,255}$", var.container_name))
    error_message = "A container name is 1-255 letters, digits, hyphens and underscores."
  }
}

variable "image" {
  description = "Container image pinned by digest: `<repository_url>@sha256:<64 hex>`. Tags are not accepted, so a deploy always names exact bytes."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9.-]*(:[0-9]+)?/[a-z0-9._/-]+@sha256:[a-f0-9]{64}$", var.image))
    error_message = "image must be <registry>/<repository>@sha256:<64 lowercase hex digits>, e.g. 123456789012.dkr.ecr.us-west-2.amazonaws.com/qbo-invoice-processor@sha256:<digest>."
  }
}

variable "container_user" {
  description = "Numeric UID (or UID:GID) the container runs as; never root."
  type        = string
  default     = "10001"

  validation {
    condition     = can(regex("^[0-9]+(:[0-9]+)?$", var.container_user)) && !startswith(var.container_user, "0")
    error_message = "container_user must be a numeric non-root UID (optionally UID:GID), e.g. 10001."
  }
}

variable "cpu" {
  description = "Task CPU units (256 = 0.25 vCPU). The jobs are I/O bound: the smallest size is enough."
  type        = number
  default     = 256

  validation {
    condition     = contains([256, 512, 1024, 2048, 4096, 8192, 16384], var.cpu)
    error_message = "cpu must be one of the Fargate sizes: 256, 512, 1024, 2048, 4096, 8192 or 16384."
  }
}

variable "memory" {
  description = "Task memory in MiB; must be a valid Fargate combination with cpu (256 CPU: 512, 1024 or 2048)."
  type        = number
  default     = 512

  validation {
    condition     = var.memory >= 512 && var.memory <= 122880 && (var.memory == 512 || var.memory % 1024 == 0)
    error_message = "memory must be 512 or a multiple of 1024 MiB up to 122880 (and match cpu, checked at plan time)."
  }
}

variable "cpu_architecture" {
  description = "CPU architecture of the image: X86_64 or ARM64 (Graviton, about 20% cheaper; the image must be built for it)."
  type        = string
  default     = "X86_64"

  validation {
    condition     = contains(["X86_64", "ARM64"], var.cpu_architecture)
    error_message = "cpu_architecture must be X86_64 or ARM64."
  }
}

variable "execution_role_arn" {
  description = "Task execution role ARN (image pull, logs)."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:role/.+$", var.execution_role_arn))
    error_message = "execution_role_arn must be an IAM role ARN."
  }
}

variable "task_role_arn" {
  description = "Task role ARN (the jobs' own permissions)."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:role/.+$", var.task_role_arn))
    error_message = "task_role_arn must be an IAM role ARN."
  }
}

variable "stop_timeout_seconds" {
  description = "Seconds between ECS's SIGTERM and its SIGKILL when the task is stopped (container stopTimeout; Fargate allows at most 120). The jobs stop gracefully on SIGTERM (summary, ledger, mail, exit 1) and must fit inside it."
  type        = number
  default     = 120

  validation {
    condition     = var.stop_timeout_seconds >= 2 && var.stop_timeout_seconds <= 120 && floor(var.stop_timeout_seconds) == var.stop_timeout_seconds
    error_message = "stop_timeout_seconds must be a whole number of seconds from 2 to 120 (Fargate's maximum)."
  }
}

variable "environment" {
  description = "Plain environment variables for the container (names from DESIGN §3). Never put secret values here: the jobs read secrets from Secrets Manager by name."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for name in keys(var.environment) : can(regex("^[A-Z_][A-Z0-9_]*$", name))])
    error_message = "Environment variable names must be upper case letters, digits and underscores, not starting with a digit."
  }
}

variable "log_group_name" {
  description = "CloudWatch log group the container logs to (created here)."
  type        = string
  default     = "/ecs/qbo-invoice-processor"

  validation {
    condition     = can(regex("^[A-Za-z0-9_/.#-]{1,512}$", var.log_group_name))
    error_message = "A log group name is 1-512 characters of letters, digits and _ / . # -."
  }
}

variable "log_retention_days" {
  description = "Days CloudWatch keeps the job logs."
  type        = number
  default     = 90

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a value CloudWatch Logs accepts: 1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288 or 3653."
  }
}

variable "tags" {
  description = "Tags for the cluster, task definition and log group (added to the provider's default tags)."
  type        = map(string)
  default     = {}
}
