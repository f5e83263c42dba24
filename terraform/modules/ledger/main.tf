# The idempotency ledger: one row per claimed invoice (`invoice#<client>#<YYYY-MM>`), per delivery
# (`send#<invoice>#<sync token>`) and per lease lock (`lock#<name>`). Rows carry `expires_at`
# (epoch seconds) so DynamoDB's TTL removes them once they can no longer matter.
resource "aws_dynamodb_table" "this" {
  #checkov:skip=CKV_AWS_119:The AWS managed key (aws/dynamodb) is enough: rows hold invoice keys, statuses and QBO request ids, never secrets or customer data beyond ids; a customer managed key would add cost and a key policy to run for no gain.
  name                        = var.name
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = "pk"
  deletion_protection_enabled = var.deletion_protection

  attribute {
    name = "pk"
    type = "S"
  }

  ttl {
    attribute_name = "expires_at"
    enabled        = true
  }

  point_in_time_recovery {
    enabled = true
  }

  # enabled = true without a key ARN = the AWS managed key aws/dynamodb.
  server_side_encryption {
    enabled = true
  }

  tags = var.tags
}
