"""Generated protobuf and gRPC code for the ``alquery.v1`` proto package.

The modules beside this file are written by ``proto/generate.py``; do not edit
them by hand.
"""
