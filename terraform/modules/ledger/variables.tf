variable "name" {
  description = "Table name; the jobs read it from LEDGER_TABLE."
  type        = string
  default     = "qbo-invoice-processor-ledger"

  validation {
    condition     = can(regex("^[A-Za-z0-9_.-]{3,255}$", var.name))
    error_message = "A DynamoDB table name is 3-255 characters of letters, digits, underscore, hyphen and dot."
  }
}

variable "deletion_protection" {
  description = "Refuse to delete the table (also through Terraform). Keep true in production: the ledger is what prevents duplicate invoices."
  type        = bool
  default     = true
}

variable "tags" {
  description = "Tags for the table (added to the provider's default tags)."
  type        = map(string)
  default     = {}
}
