-- One server, three databases: the loanrisk warehouse, MLflow's backend store, Airflow's metadata.
CREATE DATABASE mlflow OWNER loanrisk;
CREATE DATABASE airflow OWNER loanrisk;
