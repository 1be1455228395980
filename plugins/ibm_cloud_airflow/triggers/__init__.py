"""triggers of the IBM Cloud provider."""
