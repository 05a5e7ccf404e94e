"""Security findings about modelyard objects, as pure functions: the operator writes them to status and
``modelyard audit`` reports them."""
