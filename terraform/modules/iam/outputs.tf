output "execution_role_arn" {
  description = "Task execution role ARN (image pull, logs)."
  value       = aws_iam_role.execution.arn
}

output "task_role_arn" {
  description = "Task role ARN (what the jobs may do)."
  value       = aws_iam_role.task.arn
}

output "scheduler_role_arn" {
  description = "EventBridge Scheduler role ARN."
  value       = aws_iam_role.scheduler.arn
}

output "task_policy_json" {
  description = "The task role's policy document, for review."
  value       = data.aws_iam_policy_document.task.json
}

output "scheduler_policy_json" {
  description = "The scheduler role's policy document, for review."
  value       = data.aws_iam_policy_document.scheduler.json
}
