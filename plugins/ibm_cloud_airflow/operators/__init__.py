"""operators of the IBM Cloud provider."""
