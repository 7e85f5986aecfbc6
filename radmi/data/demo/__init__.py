"""radmi.data.demo"""
