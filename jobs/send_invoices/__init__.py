"""The daily send-invoices job: every invoice waiting to be sent is delivered once, archived and reported."""
