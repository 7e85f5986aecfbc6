"""radmi.data"""
