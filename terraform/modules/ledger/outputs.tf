output "table_name" {
  description = "Ledger table name (LEDGER_TABLE)."
  value       = aws_dynamodb_table.this.name
}

output "table_arn" {
  description = "Ledger table ARN, for the task role's policy."
  value       = aws_dynamodb_table.this.arn
}
