"""radmi.engines"""
