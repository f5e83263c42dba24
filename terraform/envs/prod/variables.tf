# --- Account and region -----------------------------------------------------------------------
variable "region" {
  description = "AWS region of the whole stack (and AWS_REGION of the jobs)."
  type        = string
  default     = "us-west-2"

  validation {
    condition     = can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", var.region))
    error_message = "region must be an AWS region code such as us-west-2."
  }
}

variable "allowed_account_ids" {
  description = "If set, Terraform refuses to run against any other AWS account (guards against the wrong credentials)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for id in var.allowed_account_ids : can(regex("^[0-9]{12}$", id))])
    error_message = "allowed_account_ids must hold 12-digit AWS account ids."
  }
}

variable "tags" {
  description = "Extra tags on every resource (Project and ManagedBy are always set)."
  type        = map(string)
  default     = {}
}

# --- Referenced, existing resources -------------------------------------------------------------
variable "qbo_secret_name" {
  description = "Secrets Manager name of the QBO secret (client_id, client_secret, realm_id, refresh_token, environment). The jobs rotate its refresh token."
  type        = string
  default     = "QBO/10000"

  validation {
    condition     = can(regex("^[A-Za-z0-9/_+=.@-]{1,512}$", var.qbo_secret_name))
    error_message = "A secret name is 1-512 characters of letters, digits and / _ + = . @ -."
  }
}

variable "msgraph_secret_name" {
  description = "Secrets Manager name of the Microsoft Graph secret (tenant_id, client_id, client_secret)."
  type        = string
  default     = "MsGraph/10000"

  validation {
    condition     = can(regex("^[A-Za-z0-9/_+=.@-]{1,512}$", var.msgraph_secret_name))
    error_message = "A secret name is 1-512 characters of letters, digits and / _ + = . @ -."
  }
}

variable "clickup_secret_name" {
  description = "Secrets Manager name of the ClickUp secret (api_token, team_id)."
  type        = string
  default     = "ClickUp/10000"

  validation {
    condition     = can(regex("^[A-Za-z0-9/_+=.@-]{1,512}$", var.clickup_secret_name))
    error_message = "A secret name is 1-512 characters of letters, digits and / _ + = . @ -."
  }
}

variable "robocorp_secret_name" {
  description = "Secrets Manager name of the Robocorp workspace API keys secret."
  type        = string
  default     = "RoboCorp/10000/ClientAPIKeys"

  validation {
    condition     = can(regex("^[A-Za-z0-9/_+=.@-]{1,512}$", var.robocorp_secret_name))
    error_message = "A secret name is 1-512 characters of letters, digits and / _ + = . @ -."
  }
}

variable "secret_kms_key_arns" {
  description = "Customer managed KMS keys of the secrets, if they use any (empty for the default aws/secretsmanager key)."
  type        = list(string)
  default     = []
}

variable "registry_table_name" {
  description = "The existing client registry DynamoDB table (read only; not managed here)."
  type        = string
  default     = "Robocorp_Client_Org_Workspace_IDs"

  validation {
    condition     = can(regex("^[A-Za-z0-9_.-]{3,255}$", var.registry_table_name))
    error_message = "A DynamoDB table name is 3-255 characters of letters, digits, underscore, hyphen and dot."
  }
}

# --- What the jobs do -------------------------------------------------------------------------
variable "bookkeeper_email" {
  description = "Who receives the run summaries (BOOKKEEPER_EMAIL)."
  type        = string

  validation {
    condition     = can(regex("^[^@\\s,;]+@[^@\\s,;]+\\.[^@\\s,;]+$", var.bookkeeper_email))
    error_message = "bookkeeper_email must be one email address."
  }
}

variable "sender_email" {
  description = "Mailbox the summaries (and Graph-delivered invoices) are sent from (SENDER_EMAIL)."
  type        = string

  validation {
    condition     = can(regex("^[^@\\s,;]+@[^@\\s,;]+\\.[^@\\s,;]+$", var.sender_email))
    error_message = "sender_email must be one email address."
  }
}

variable "excluded_customers" {
  description = "Customers never invoiced or sent: display names or client numbers (joined with commas into EXCLUDED_CUSTOMERS)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.excluded_customers : trimspace(c) != "" && !strcontains(c, ",")])
    error_message = "excluded_customers entries must be non-empty and contain no comma (the list is passed comma-separated)."
  }
}

variable "ms_graph_hostname" {
  description = "SharePoint host name, e.g. contoso.sharepoint.com (MS_GRAPH_HOSTNAME)."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9.-]+\\.[A-Za-z]{2,}$", var.ms_graph_hostname))
    error_message = "ms_graph_hostname must be a host name such as contoso.sharepoint.com."
  }
}

variable "sharepoint_site_path" {
  description = "SharePoint site path, e.g. /sites/Finance (SHAREPOINT_SITE_PATH)."
  type        = string

  validation {
    condition     = startswith(var.sharepoint_site_path, "/")
    error_message = "sharepoint_site_path must start with /, e.g. /sites/Finance."
  }
}

variable "sharepoint_folder" {
  description = "Folder in the site's default library the usage CSVs and invoice PDFs go to (SHAREPOINT_FOLDER)."
  type        = string
  default     = "Invoices"

  validation {
    condition     = trimspace(var.sharepoint_folder) != ""
    error_message = "sharepoint_folder must not be empty."
  }
}

variable "invoice_delivery" {
  description = "How invoices are emailed: qbo (QuickBooks sends them) or graph (a mail from SENDER_EMAIL with the PDF)."
  type        = string
  default     = "qbo"

  validation {
    condition     = contains(["qbo", "graph"], var.invoice_delivery)
    error_message = "invoice_delivery must be qbo or graph."
  }
}

variable "metrics_namespace" {
  description = "CloudWatch namespace of the jobs' run metrics (METRICS_NAMESPACE)."
  type        = string
  default     = "QboInvoiceProcessor"

  validation {
    condition     = can(regex("^[A-Za-z0-9._/#:-]{1,255}$", var.metrics_namespace)) && !startswith(var.metrics_namespace, "AWS/")
    error_message = "The metrics namespace must be 1-255 characters (letters, digits, . _ / # : -) and must not start with AWS/."
  }
}

# --- Image and task size ----------------------------------------------------------------------
variable "image_digest" {
  description = "Digest of the pushed image (sha256:<64 hex>); `make deploy` passes the digest ECR returned for the push."
  type        = string

  validation {
    condition     = can(regex("^sha256:[a-f0-9]{64}$", var.image_digest))
    error_message = "image_digest must be sha256: followed by 64 lowercase hex digits."
  }
}

variable "image_repository_url" {
  description = "Repository the image lives in; null = the ECR repository this stack creates."
  type        = string
  default     = null
}

variable "task_cpu" {
  description = "Task CPU units (256 = 0.25 vCPU)."
  type        = number
  default     = 256
}

variable "task_memory" {
  description = "Task memory in MiB (with 256 CPU: 512, 1024 or 2048)."
  type        = number
  default     = 512
}

variable "cpu_architecture" {
  description = "X86_64 or ARM64; must match the image's platform."
  type        = string
  default     = "X86_64"

  validation {
    condition     = contains(["X86_64", "ARM64"], var.cpu_architecture)
    error_message = "cpu_architecture must be X86_64 or ARM64."
  }
}

variable "container_insights" {
  description = "Container Insights on the cluster: enabled, enhanced or disabled."
  type        = string
  default     = "enabled"
}

variable "task_stop_timeout_seconds" {
  description = "Seconds ECS waits after SIGTERM before SIGKILL (container stopTimeout; Fargate's maximum is 120). The jobs' graceful stop (summary, ledger, bookkeeper mail, exit 1) must fit inside it."
  type        = number
  default     = 120
}

variable "log_retention_days" {
  description = "Days the job logs are kept."
  type        = number
  default     = 90
}

variable "ecr_tagged_images_to_keep" {
  description = "Tagged images kept in ECR (older ones expire)."
  type        = number
  default     = 30
}

variable "ecr_untagged_image_expiry_days" {
  description = "Days after which untagged images expire."
  type        = number
  default     = 7
}

variable "ecr_force_delete" {
  description = "Let destroy delete the repository with its images. Keep false."
  type        = bool
  default     = false
}

variable "ledger_deletion_protection" {
  description = "Deletion protection on the ledger table. Keep true: the ledger is what prevents duplicate invoices."
  type        = bool
  default     = true
}

# --- Network ----------------------------------------------------------------------------------
# The jobs call QBO, Microsoft Graph, ClickUp and Robocorp on the internet: VPC endpoints alone
# cannot reach them. The subnets need a NAT gateway (assign_public_ip = false) or must be public
# subnets with a route to an internet gateway (assign_public_ip = true).
variable "subnet_ids" {
  description = "Subnets the tasks run in. They need a route to the internet: private subnets with a NAT gateway (assign_public_ip = false) or public subnets with an internet gateway (assign_public_ip = true). VPC endpoints alone cannot reach QBO, Graph, ClickUp or Robocorp."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) > 0 && alltrue([for id in var.subnet_ids : can(regex("^subnet-[0-9a-f]+$", id))])
    error_message = "Give at least one subnet id (subnet-...)."
  }
}

variable "vpc_id" {
  description = "VPC of the subnets. When set, the stack creates the tasks' security group there: outbound HTTPS (443) only, no inbound. Leave null to bring your own in security_group_ids."
  type        = string
  default     = null

  validation {
    condition     = var.vpc_id == null || can(regex("^vpc-[0-9a-f]+$", var.vpc_id))
    error_message = "vpc_id must be a VPC id (vpc-...) or null."
  }
}

variable "security_group_ids" {
  description = "Your own security groups for the tasks (outbound HTTPS 443 is all the jobs need; no inbound). May be empty when vpc_id is set: then the stack's own group is used (added to these)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for id in var.security_group_ids : can(regex("^sg-[0-9a-f]+$", id))])
    error_message = "security_group_ids must hold security group ids (sg-...)."
  }

  validation {
    condition     = length(var.security_group_ids) > 0 || var.vpc_id != null
    error_message = "Give security_group_ids, or vpc_id so the stack creates a security group (egress 443 only)."
  }
}

variable "assign_public_ip" {
  description = "true: the tasks get a public IP (public subnets with an internet gateway and no NAT, the seed guide's setup). false: private subnets, which then need a NAT gateway; without one the tasks cannot reach QBO, Graph, ClickUp or Robocorp (VPC endpoints cover AWS services only)."
  type        = bool
}

# --- Schedules and alarms ---------------------------------------------------------------------
variable "schedule_timezone" {
  description = "The business time zone: the schedules fire in it (daylight saving time followed) and the jobs get it as BUSINESS_TIME_ZONE, to reckon billing months and dates in it. One setting, so the two never disagree."
  type        = string
  default     = "America/Los_Angeles"

  validation {
    condition     = can(regex("^(UTC|Etc/[A-Za-z0-9+-]+|[A-Z][A-Za-z_-]+(/[A-Z][A-Za-z0-9_+-]+){1,2})$", var.schedule_timezone))
    error_message = "schedule_timezone must be an IANA time zone name such as America/Los_Angeles or UTC."
  }
}

variable "create_invoices_schedule" {
  description = "When invoices are created: daily on the 4th-10th at 09:00 (schedule_timezone). The first success bills the previous month; later runs change nothing and heal a failed or killed one. Move create_invoices_deadline_schedule with it."
  type        = string
  default     = "cron(0 9 4-10 * ? *)"
}

variable "send_invoices_schedule" {
  description = "When waiting invoices are sent: daily 05:00 (schedule_timezone)."
  type        = string
  default     = "cron(0 5 * * ? *)"
}

variable "schedules_enabled" {
  description = "Set false to pause both schedules (e.g. during a migration) without destroying them; the missed-run check schedule and the missed-run alarms pause with them."
  type        = bool
  default     = true
}

variable "schedule_retry_attempts" {
  description = "Retries when EventBridge Scheduler cannot start a task."
  type        = number
  default     = 10
}

variable "create_invoices_retry_window_seconds" {
  description = "How long the monthly run may still be started after its time if RunTask keeps failing."
  type        = number
  default     = 21600
}

variable "send_invoices_retry_window_seconds" {
  description = "How long the daily run may still be started after its time if RunTask keeps failing."
  type        = number
  default     = 3600
}

variable "send_invoices_max_hours_without_run" {
  description = "Alarm when no send-invoices run succeeded (exit 0) for this many hours."
  type        = number
  default     = 26
}

variable "create_invoices_deadline_schedule" {
  description = "When the monthly window is checked: the 10th at 21:00 (schedule_timezone), 12 hours after the window's last try (its 6-hour retry window plus the run). Move it with create_invoices_schedule."
  type        = string
  default     = "cron(0 21 10 * ? *)"
}

variable "create_invoices_lookback_hours" {
  description = "At the deadline, how far back a successful create-invoices run is looked for: 160 h reaches from the 10th 21:00 back to the 4th about 05:00, before the window's first try (09:00) even on a 25-hour DST day. At most 168 (CloudWatch's 7 days)."
  type        = number
  default     = 160
}

variable "alert_emails" {
  description = "Who gets the alerts (failed task, dead-letter queue, missed run)."
  type        = list(string)

  validation {
    condition     = length(var.alert_emails) > 0
    error_message = "Give at least one alert email address: alarms nobody receives are worthless."
  }
}
