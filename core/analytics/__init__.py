"""The read side: performance metrics, calibration, the report sections and the audit narrative."""
