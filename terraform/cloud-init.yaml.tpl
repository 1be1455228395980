#cloud-config
# VM boot contract (docs/architecture.md): run.env + bootstrap.sh, then runcmd runs bootstrap.
write_files:
  - path: /etc/gpu-workload/run.env
    owner: root:root
    permissions: "0600"
    content: |
      RUN_ID=${run_id}
      RUN_DEADLINE=${run_deadline}
      INSTANCE_INDEX=${instance_index}
      INSTANCE_COUNT=${instance_count}
      COS_ENDPOINT=${cos_endpoint}
      COS_BUCKET=${cos_bucket}
      COS_OUTPUT_PREFIX=${cos_output_prefix}
      WORKLOAD_BUNDLE_KEY=${workload_bundle_key}
      COS_AUTH=${cos_auth}
      TRUSTED_PROFILE_ID=${trusted_profile_id}
      DATASET=${dataset}
      EPOCHS=${epochs}
      BATCH_SIZE=${batch_size}
      LEARNING_RATE=${learning_rate}
      SEED=${seed}
      CHECKPOINT_EVERY_EPOCHS=${checkpoint_every_epochs}
      DISTRIBUTION=${distribution}
      CLUSTER_HOSTS=${cluster_hosts}
      TRAINING_PORT=${training_port}
      COLLECTIVE_TIMEOUT_S=${collective_timeout_seconds}
      EXPECTED_GPU_COUNT=${expected_gpu_count}
      NVSWITCH=${nvswitch ? 1 : 0}
%{~ if cos_auth == "hmac" }
      COS_HMAC_ACCESS_KEY_ID=${cos_hmac_access_key_id}
      COS_HMAC_SECRET_ACCESS_KEY=${cos_hmac_secret_access_key}
%{~ endif }
  - path: /opt/gpu-workload/bootstrap.sh
    owner: root:root
    permissions: "0755"
    encoding: b64
    content: ${bootstrap_b64}
runcmd:
  - [/opt/gpu-workload/bootstrap.sh, /etc/gpu-workload/run.env]
