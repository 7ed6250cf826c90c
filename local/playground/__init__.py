"""The playground: one web page for trying the API by hand, served by `make up`."""
