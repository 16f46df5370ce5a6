"""The chat web frontend: a Streamlit app that talks to the RAG API over HTTP."""
