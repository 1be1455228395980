"""sensors of the IBM Cloud provider."""
