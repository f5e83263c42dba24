# The whole AWS footprint of the QBO invoice processor (DESIGN §5): one image, one task
# definition, two schedules, alarms, and the ledger table. The four secrets and the client
# registry table already exist and are only referenced.

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

locals {
  name = "qbo-invoice-processor"

  # Names are fixed up front and the ARNs the IAM policies need are derived from them, so the
  # module graph stays acyclic (iam does not wait on ecs or the schedules, which need its roles).
  arn_prefix   = "arn:${data.aws_partition.current.partition}"
  account_id   = data.aws_caller_identity.current.account_id
  cluster_name = "${local.name}-cluster"
  cluster_arn  = "${local.arn_prefix}:ecs:${var.region}:${local.account_id}:cluster/${local.cluster_name}"
  # The two scheduled jobs: same image and task definition, different command and schedule.
  jobs = {
    "create-invoices" = {
      description  = "Daily on the 4th-10th: create one QBO invoice per client for the previous month (the first success bills; later runs change nothing and heal a failed one)."
      schedule     = var.create_invoices_schedule
      command      = ["--create-invoices"]
      retry_window = var.create_invoices_retry_window_seconds
    }
    "send-invoices" = {
      description  = "Daily: deliver QBO invoices waiting to be sent."
      schedule     = var.send_invoices_schedule
      command      = ["--send-invoices"]
      retry_window = var.send_invoices_retry_window_seconds
    }
  }
  dead_letter_queue_arns = [
    for job in keys(local.jobs) :
    "${local.arn_prefix}:sqs:${var.region}:${local.account_id}:${local.name}-${job}-dlq"
  ]

  secret_names = {
    qbo      = var.qbo_secret_name
    msgraph  = var.msgraph_secret_name
    clickup  = var.clickup_secret_name
    robocorp = var.robocorp_secret_name
  }

  image = "${coalesce(var.image_repository_url, module.ecr.repository_url)}@${var.image_digest}"

  # DESIGN §3: the names the jobs read. No secret values: the jobs read those by name.
  environment = {
    AWS_REGION                      = var.region
    QBO_SECRET_NAME                 = var.qbo_secret_name
    MSGRAPH_SECRET_NAME             = var.msgraph_secret_name
    CLICKUP_SECRET_NAME             = var.clickup_secret_name
    ROBOCORP_API_SECRET_NAME        = var.robocorp_secret_name
    DYNAMODB_TABLE_ROBOCORP_CLIENTS = var.registry_table_name
    LEDGER_TABLE                    = module.ledger.table_name
    BOOKKEEPER_EMAIL                = var.bookkeeper_email
    SENDER_EMAIL                    = var.sender_email
    EXCLUDED_CUSTOMERS              = join(",", var.excluded_customers)
    MS_GRAPH_HOSTNAME               = var.ms_graph_hostname
    SHAREPOINT_SITE_PATH            = var.sharepoint_site_path
    SHAREPOINT_FOLDER               = var.sharepoint_folder
    INVOICE_DELIVERY                = var.invoice_delivery
    LOG_FORMAT                      = "json"
    METRICS_NAMESPACE               = var.metrics_namespace
    # One setting for the business time zone: the schedules fire in it and the jobs reckon
    # billing months and "today" in it, so the two can never disagree.
    BUSINESS_TIME_ZONE = var.schedule_timezone
  }
}

# Referenced, never created: the secrets hold live credentials put there by a person. Looking
# them up by name gives their exact ARNs (with the random suffix) for the task role's policy.
data "aws_secretsmanager_secret" "this" {
  for_each = local.secret_names
  name     = each.value
}

# The client registry already exists (it predates this project); read, never managed here.
data "aws_dynamodb_table" "registry" {
  name = var.registry_table_name
}

module "ecr" {
  source = "../../modules/ecr"

  name                       = local.name
  tagged_images_to_keep      = var.ecr_tagged_images_to_keep
  untagged_image_expiry_days = var.ecr_untagged_image_expiry_days
  force_delete               = var.ecr_force_delete
}

module "ledger" {
  source = "../../modules/ledger"

  name                = "${local.name}-ledger"
  deletion_protection = var.ledger_deletion_protection
}

module "iam" {
  source = "../../modules/iam"

  task_family            = local.name
  cluster_arn            = local.cluster_arn
  readable_secret_arns   = [for key in sort(keys(local.secret_names)) : data.aws_secretsmanager_secret.this[key].arn]
  writable_secret_arn    = data.aws_secretsmanager_secret.this["qbo"].arn
  secret_kms_key_arns    = var.secret_kms_key_arns
  registry_table_arn     = data.aws_dynamodb_table.registry.arn
  ledger_table_arn       = module.ledger.table_arn
  metrics_namespace      = var.metrics_namespace
  dead_letter_queue_arns = local.dead_letter_queue_arns
}

module "ecs" {
  source = "../../modules/ecs"

  cluster_name       = local.cluster_name
  container_insights = var.container_insights
  family             = local.name
  container_name     = "invoice-processor"
  image              = local.image
  cpu                = var.task_cpu
  memory             = var.task_memory
  cpu_architecture   = var.cpu_architecture
  execution_role_arn = module.iam.execution_role_arn
  task_role_arn      = module.iam.task_role_arn
  environment        = local.environment
  log_group_name     = "/ecs/${local.name}"
  log_retention_days = var.log_retention_days
  # Fargate's maximum: the graceful SIGTERM stop (summary, ledger, mail, exit 1) must fit inside.
  stop_timeout_seconds = var.task_stop_timeout_seconds
}

module "schedule" {
  source   = "../../modules/scheduled_job"
  for_each = local.jobs

  name_prefix                  = local.name
  job_name                     = each.key
  description                  = each.value.description
  schedule_expression          = each.value.schedule
  timezone                     = var.schedule_timezone
  enabled                      = var.schedules_enabled
  cluster_arn                  = module.ecs.cluster_arn
  task_definition_arn          = module.ecs.task_definition_arn
  container_name               = module.ecs.container_name
  command                      = each.value.command
  subnet_ids                   = var.subnet_ids
  security_group_ids           = local.security_group_ids
  assign_public_ip             = var.assign_public_ip
  scheduler_role_arn           = module.iam.scheduler_role_arn
  maximum_event_age_in_seconds = each.value.retry_window
  maximum_retry_attempts       = var.schedule_retry_attempts
}

module "alarms" {
  source = "../../modules/alarms"

  name_prefix        = local.name
  topic_name         = "${local.name}-alerts"
  alert_emails       = var.alert_emails
  cluster_arn        = module.ecs.cluster_arn
  log_group_name     = module.ecs.log_group_name
  metrics_namespace  = var.metrics_namespace
  timezone           = var.schedule_timezone
  scheduler_role_arn = module.iam.scheduler_role_arn
  # Paused schedules pause their missed-run checks too, or a planned pause would raise alarms.
  enabled = var.schedules_enabled

  dead_letter_queues = {
    for job, schedule in module.schedule : job => schedule.dead_letter_queue_name
  }

  run_checks = {
    # Daily job: alarm once no run succeeded for this many hours (a day plus slack; DST days
    # are 23 or 25 hours long).
    "send-invoices" = {
      max_hours_without_run = var.send_invoices_max_hours_without_run
    }
    # Monthly window (daily tries on the 4th-10th): a month is beyond CloudWatch's 7-day limit, so
    # a deadline check after the window's last try looks back over the whole window (see README).
    "create-invoices" = {
      max_hours_without_run       = var.create_invoices_lookback_hours
      check_schedule_expression   = var.create_invoices_deadline_schedule
      check_dead_letter_queue_arn = module.schedule["create-invoices"].dead_letter_queue_arn
    }
  }
}
