"""radmi.models"""
