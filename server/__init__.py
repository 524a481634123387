"""The alquery gRPC server: request edge, strategies, selection and serving.

Every logger in this package sits under the ``alquery`` root logger, so that
operators configure them in one place.
"""
