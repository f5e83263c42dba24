output "cluster_name" {
  description = "ECS cluster name."
  value       = aws_ecs_cluster.this.name
}

output "cluster_arn" {
  description = "ECS cluster ARN (the schedules' target)."
  value       = aws_ecs_cluster.this.arn
}

output "task_definition_arn" {
  description = "Task definition ARN WITH its revision: feed it to the schedules so a new image reaches them."
  value       = aws_ecs_task_definition.this.arn
}

output "task_definition_family" {
  description = "Task definition family."
  value       = aws_ecs_task_definition.this.family
}

output "task_definition_revision" {
  description = "Current task definition revision."
  value       = aws_ecs_task_definition.this.revision
}

output "container_name" {
  description = "Container name used in command overrides."
  value       = var.container_name
}

output "log_group_name" {
  description = "Log group of the jobs."
  value       = aws_cloudwatch_log_group.this.name
}

output "log_group_arn" {
  description = "Log group ARN."
  value       = aws_cloudwatch_log_group.this.arn
}
