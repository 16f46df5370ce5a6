"""The lakehouse: storage settings, Delta tables in medallion layers, and the shared CLI plumbing.

Every workload (training, serving, RAG) reads its data from here, so this is the one package the
others share.
"""
