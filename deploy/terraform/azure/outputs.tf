output "resource_group" {
  description = "Resource group holding everything."
  value       = azurerm_resource_group.main.name
}

output "storage_account" {
  description = "Storage account for data and MLflow artifacts."
  value       = azurerm_storage_account.data.name
}

output "storage_container_url" {
  description = "abfs-style location of the data container."
  value       = "abfs://${azurerm_storage_container.data.name}@${azurerm_storage_account.data.name}.dfs.core.windows.net"
}

output "container_registry" {
  description = "Login server to push the loanrisk image to."
  value       = azurerm_container_registry.main.login_server
}

output "aks_cluster" {
  description = "AKS cluster name (az aks get-credentials -g <resource_group> -n <aks_cluster>)."
  value       = azurerm_kubernetes_cluster.main.name
}

output "postgres_fqdn" {
  description = "Host name of the PostgreSQL flexible server."
  value       = azurerm_postgresql_flexible_server.main.fqdn
}

output "key_vault_uri" {
  description = "Key Vault holding postgres-password and loanrisk-warehouse-url."
  value       = azurerm_key_vault.main.vault_uri
}
