"""radmi.eval"""
