variable "subscription_id" {
  description = "Azure subscription to deploy into."
  type        = string
}

variable "name" {
  description = "Short lowercase prefix for every resource (letters and digits, 3-12 chars)."
  type        = string
  default     = "loanrisk"
  validation {
    condition     = can(regex("^[a-z][a-z0-9]{2,11}$", var.name))
    error_message = "name must be 3-12 lowercase letters or digits, starting with a letter."
  }
}

variable "environment" {
  description = "Environment (dev, prod)."
  type        = string
  default     = "dev"
  validation {
    condition     = contains(["dev", "prod"], var.environment)
    error_message = "environment must be dev or prod."
  }
}

variable "location" {
  description = "Azure region."
  type        = string
  default     = "westeurope"
}

variable "aks_node_count" {
  description = "Nodes in the AKS system pool."
  type        = number
  default     = 2
}

variable "aks_node_size" {
  description = "VM size of the AKS nodes."
  type        = string
  default     = "Standard_D4s_v5"
}

variable "kubernetes_version" {
  description = "AKS Kubernetes version (null = the region's default)."
  type        = string
  default     = null
}

variable "postgres_sku" {
  description = "SKU of the PostgreSQL flexible server."
  type        = string
  default     = "B_Standard_B2s"
}

variable "postgres_storage_mb" {
  description = "Storage of the PostgreSQL flexible server in MB."
  type        = number
  default     = 32768
}

variable "postgres_admin_login" {
  description = "Administrator login of the PostgreSQL server (the password is generated and kept in Key Vault)."
  type        = string
  default     = "loanrisk"
}

variable "allowed_ip_ranges" {
  description = "Public IP ranges (CIDR) allowed to reach PostgreSQL besides Azure services."
  type        = list(string)
  default     = []
}
