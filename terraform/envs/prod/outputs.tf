output "cluster_name" {
  description = "ECS cluster name."
  value       = module.ecs.cluster_name
}

output "cluster_arn" {
  description = "ECS cluster ARN."
  value       = module.ecs.cluster_arn
}

output "container_name" {
  description = "Name of the job container (the one a run-task command override addresses)."
  value       = module.ecs.container_name
}

output "subnet_ids" {
  description = "Subnets the schedules run the task in (use the same for a manual or smoke run)."
  value       = var.subnet_ids
}

output "security_group_ids" {
  description = "Security groups the schedules give the task: yours plus the one created from vpc_id, if any."
  value       = local.security_group_ids
}

output "assign_public_ip" {
  description = "Whether the schedules give the task a public IP (true in public subnets without NAT)."
  value       = var.assign_public_ip
}

output "task_security_group_id" {
  description = "The security group the stack created from vpc_id (egress 443 only), or null."
  value       = one(aws_security_group.task[*].id)
}

output "task_definition_arn" {
  description = "Task definition ARN with its revision (what both schedules run)."
  value       = module.ecs.task_definition_arn
}

output "image" {
  description = "The image the task definition runs (pinned by digest)."
  value       = local.image
}

output "schedule_arns" {
  description = "EventBridge Scheduler schedules, job => ARN."
  value = {
    for job, schedule in module.schedule : job => schedule.schedule_arn
  }
}

output "dead_letter_queue_urls" {
  description = "Dead-letter queues of the schedules, job => URL."
  value = {
    for job, schedule in module.schedule : job => schedule.dead_letter_queue_url
  }
}

output "alerts_topic_arn" {
  description = "SNS topic the alerts go to."
  value       = module.alarms.topic_arn
}

output "missed_run_alarm_names" {
  description = "Alarms that notify about a missed run, job => alarm name."
  value       = module.alarms.missed_run_alarm_names
}

output "ecr_repository_url" {
  description = "ECR repository URL to push the image to."
  value       = module.ecr.repository_url
}

output "ledger_table_name" {
  description = "Ledger table name (LEDGER_TABLE)."
  value       = module.ledger.table_name
}

output "ledger_table_arn" {
  description = "Ledger table ARN."
  value       = module.ledger.table_arn
}

output "log_group_name" {
  description = "Log group of both jobs."
  value       = module.ecs.log_group_name
}

output "task_role_arn" {
  description = "Task role ARN."
  value       = module.iam.task_role_arn
}

output "execution_role_arn" {
  description = "Task execution role ARN."
  value       = module.iam.execution_role_arn
}

output "scheduler_role_arn" {
  description = "EventBridge Scheduler role ARN."
  value       = module.iam.scheduler_role_arn
}
