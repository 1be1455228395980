"""links of the IBM Cloud provider."""
