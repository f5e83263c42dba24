"""The create-invoices job: pure billing rules (period, attribution, billing, customers) and the job."""
