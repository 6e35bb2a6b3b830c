"""Wire formats: XML-RPC and JSON-RPC as xapi speaks them."""
