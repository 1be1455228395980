# IDs and private addresses only: no secret, no user_data, no public key.

output "vpc_id" {
  description = "ID of the run's VPC."
  value       = ibm_is_vpc.vpc.id
}

output "subnet_id" {
  description = "ID of the run's subnet."
  value       = ibm_is_subnet.subnet.id
}

output "security_group_id" {
  description = "ID of the servers' security group."
  value       = ibm_is_security_group.vm.id
}

output "instance_ids" {
  description = "IDs of the GPU servers, by instance index."
  value       = ibm_is_instance.vm[*].id
}

output "instance_names" {
  description = "Names of the GPU servers (<run_id>-vm-<index>)."
  value       = ibm_is_instance.vm[*].name
}

output "private_ips" {
  description = "Private IPv4 addresses of the GPU servers, by instance index."
  value       = ibm_is_subnet_reserved_ip.vm[*].address
}

output "trusted_profile_id" {
  description = "ID of the servers' trusted profile (\"\" in hmac mode)."
  value       = local.trusted_profile ? ibm_iam_trusted_profile.vm[0].id : ""
}

output "image_id" {
  description = "ID of the boot image resolved from image_name."
  value       = data.ibm_is_image.image.id
}

output "debug_floating_ips" {
  description = "Public addresses of the servers in debug mode (empty otherwise)."
  value       = ibm_is_floating_ip.debug[*].address
}
