"""hooks of the IBM Cloud provider."""
