output "schedule_name" {
  description = "Schedule name."
  value       = aws_scheduler_schedule.this.name
}

output "schedule_arn" {
  description = "Schedule ARN."
  value       = aws_scheduler_schedule.this.arn
}

output "dead_letter_queue_arn" {
  description = "Dead-letter queue ARN."
  value       = aws_sqs_queue.dead_letter.arn
}

output "dead_letter_queue_name" {
  description = "Dead-letter queue name (the alarm's QueueName dimension)."
  value       = aws_sqs_queue.dead_letter.name
}

output "dead_letter_queue_url" {
  description = "Dead-letter queue URL, to inspect or redrive failed invocations."
  value       = aws_sqs_queue.dead_letter.id
}

output "input" {
  description = "The exact input (container override) the schedule sends."
  value       = local.input
}
