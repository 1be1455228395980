"""utils of the IBM Cloud provider."""
