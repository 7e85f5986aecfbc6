"""radmi.transforms"""
