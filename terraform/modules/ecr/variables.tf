variable "name" {
  description = "Repository name."
  type        = string
  default     = "qbo-invoice-processor"

  validation {
    condition     = can(regex("^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$", var.name)) && length(var.name) <= 256
    error_message = "The repository name must be lowercase letters, digits and . _ - / separators (ECR naming rules), at most 256 characters."
  }
}

variable "tagged_images_to_keep" {
  description = "How many tagged images to keep; older tagged images are expired. Must exceed the number of pushes you may make between deploys, or the image a task definition pins could be expired."
  type        = number
  default     = 30

  validation {
    condition     = var.tagged_images_to_keep >= 5 && var.tagged_images_to_keep <= 1000 && floor(var.tagged_images_to_keep) == var.tagged_images_to_keep
    error_message = "Keep between 5 and 1000 tagged images (a whole number)."
  }
}

variable "untagged_image_expiry_days" {
  description = "Days after push after which untagged images (failed or superseded pushes) are expired."
  type        = number
  default     = 7

  validation {
    condition     = var.untagged_image_expiry_days >= 1 && var.untagged_image_expiry_days <= 365 && floor(var.untagged_image_expiry_days) == var.untagged_image_expiry_days
    error_message = "Untagged images must expire after 1 to 365 days (a whole number)."
  }
}

variable "force_delete" {
  description = "Allow `terraform destroy` to delete the repository while it still holds images. Keep false in production."
  type        = bool
  default     = false
}

variable "tags" {
  description = "Tags for the repository (added to the provider's default tags)."
  type        = map(string)
  default     = {}
}
