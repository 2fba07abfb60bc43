variable "name" {
  description = "Name used for the key alias (alias/<name>), e.g. batchml-prod."
  type        = string
}

variable "deletion_window_in_days" {
  description = "Waiting period (7-30 days) before a scheduled key deletion takes effect."
  type        = number
  default     = 30

  validation {
    condition     = var.deletion_window_in_days >= 7 && var.deletion_window_in_days <= 30
    error_message = "deletion_window_in_days must be between 7 and 30."
  }
}

variable "tags" {
  description = "Tags added to the key."
  type        = map(string)
  default     = {}
}
