terraform {
  # use_lockfile (S3-native state locking) needs Terraform 1.10 or newer.
  required_version = ">= 1.10.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.100"
    }
  }

  # Partial configuration: bucket, key and region come from `terraform init -backend-config=...`
  # (see backend.hcl.example), so no account-specific name is committed.
  backend "s3" {
    encrypt      = true
    use_lockfile = true
  }
}
