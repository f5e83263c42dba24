output "topic_arn" {
  description = "SNS alert topic ARN."
  value       = aws_sns_topic.alerts.arn
}

output "topic_kms_key_arn" {
  description = "KMS key encrypting the topic."
  value       = aws_kms_key.alerts.arn
}

output "task_failed_rule_arn" {
  description = "EventBridge rule on failed tasks."
  value       = aws_cloudwatch_event_rule.task_failed.arn
}

output "task_failed_event_pattern" {
  description = "The rule's event pattern (JSON)."
  value       = aws_cloudwatch_event_rule.task_failed.event_pattern
}

output "dead_letter_alarm_names" {
  description = "Dead-letter queue alarms, job => alarm name."
  value       = { for job, a in aws_cloudwatch_metric_alarm.dead_letter : job => a.alarm_name }
}

output "missed_run_alarm_names" {
  description = "The alarm that notifies about a missed run, job => alarm name (metric alarm for frequent jobs, composite for deadline-checked ones)."
  value = merge(
    { for job, a in aws_cloudwatch_metric_alarm.no_run : job => a.alarm_name if contains(keys(local.plain_checks), job) },
    { for job, a in aws_cloudwatch_composite_alarm.missed_run : job => a.alarm_name },
  )
}

output "check_schedule_arns" {
  description = "Deadline check schedules, job => schedule ARN."
  value       = { for job, s in aws_scheduler_schedule.check : job => s.arn }
}
