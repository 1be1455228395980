# Terraform as IBM Cloud Schematics runs it: set the workspace's template_type to terraform_v1.13
# (Schematics blocks new workspaces on <= 1.12 from mid-2026).
terraform {
  required_version = ">= 1.13.0"

  required_providers {
    ibm = {
      source = "IBM-Cloud/ibm"
      # v2.5.0 is the provider release this configuration was written against; "~> 2.5.0"
      # accepts its patch releases only.
      version = "~> 2.5.0"
    }
  }
}

# In Schematics no API key is configured here: the job runs with the caller's IAM token.
provider "ibm" {
  region = var.region
}
